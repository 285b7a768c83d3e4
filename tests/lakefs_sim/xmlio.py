"""XML and time formatting shared by the gateway.

Output mimics Go's encoding/xml as lakeFS uses it: no indentation, the
standard header line, text escaped like xml.EscapeText (quotes become
&#34;/&#39;, \\t \\n \\r become character references, characters XML cannot
carry become U+FFFD). Input parsing ignores namespaces, as Go's decoder
matches local names.
"""
import re
import time
import xml.etree.ElementTree as ET

HEADER = '<?xml version="1.0" encoding="UTF-8"?>\n'
S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"

_SPECIAL = re.compile('[&<>"\'\t\n\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]')
_REPL = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&#34;", "'": "&#39;",
         "\t": "&#x9;", "\n": "&#xA;", "\r": "&#xD;"}


def esc(s):
    """Escapes text content like Go's xml.EscapeText."""
    if not _SPECIAL.search(s):
        return s
    return _SPECIAL.sub(lambda m: _REPL.get(m.group(0), "\ufffd"), s)


def elem(name, text):
    return "<%s>%s</%s>" % (name, esc(str(text)), name)


def document(body):
    """The response bytes for an XML body string."""
    return (HEADER + body).encode("utf-8")


def boolstr(v):
    return "true" if v else "false"


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def iso_ms(t):
    """2006-01-02T15:04:05.000Z, the timestamp format of S3 XML documents."""
    g = time.gmtime(t)
    ms = int(round((t - int(t)) * 1000))
    if ms >= 1000:
        ms = 999
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (g.tm_year, g.tm_mon, g.tm_mday,
                                                    g.tm_hour, g.tm_min, g.tm_sec, ms)


def http_date(t):
    """Mon, 02 Jan 2006 15:04:05 GMT, independent of the locale."""
    g = time.gmtime(t)
    return "%s, %02d %s %04d %02d:%02d:%02d GMT" % (_DAYS[g.tm_wday], g.tm_mday,
                                                    _MONTHS[g.tm_mon - 1], g.tm_year,
                                                    g.tm_hour, g.tm_min, g.tm_sec)


class XMLError(ValueError):
    pass


def _local(tag):
    return tag.rsplit("}", 1)[-1] if "}" in tag else tag


def parse(data):
    """Parses a request body; returns the root Element with namespaces removed."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise XMLError(str(e)) from None
    for el in root.iter():
        el.tag = _local(el.tag)
    return root


def child_text(el, name, default=None):
    c = el.find(name)
    if c is None:
        return default
    return c.text or ""


def parse_bool(s):
    """Go's strconv.ParseBool."""
    if s in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if s in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise XMLError("invalid boolean %r" % s)
