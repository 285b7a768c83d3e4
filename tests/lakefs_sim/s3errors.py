"""S3 error codes as lakeFS's gateway reports them (pkg/gateway/errors).

An S3Error carries a symbolic name from the table below; the table gives the
wire Code, HTTP status and the fixed description lakeFS uses as Message.
Several lakeFS names share one wire Code (e.g. InvalidCopySource and
InvalidMaxKeys are both "InvalidArgument").
"""
import os
import uuid

from . import xmlio

CODES = {
    "AccessDenied": ("AccessDenied", 403, "Access Denied."),
    "BadDigest": ("BadDigest", 400, "The Content-Md5 you specified did not match what we received."),
    "EntityTooSmall": ("EntityTooSmall", 400,
                       "Your proposed upload is smaller than the minimum allowed object size."),
    "InternalError": ("InternalError", 500, "We encountered an internal error, please try again."),
    "InvalidAccessKeyId": ("InvalidAccessKeyId", 403,
                           "The access key ID you provided does not exist in our records."),
    "InvalidRange": ("InvalidRange", 416, "The requested range is not satisfiable"),
    "InvalidCopySource": ("InvalidArgument", 400,
                          "Copy Source must mention the source bucket and key: sourcebucket/sourcekey."),
    "InvalidCopyDest": ("InvalidRequest", 400,
                        "This copy request is illegal because it is trying to copy an object to "
                        "itself without changing the object's metadata, storage class, website "
                        "redirect location or encryption attributes."),
    "InvalidPartNumberMarker": ("InvalidArgument", 400, "Argument partNumberMarker must be an integer."),
    "InvalidHeaderValue": ("InvalidArgument", 400, "Invalid header value."),
    "InvalidMaxUploads": ("InvalidArgument", 400,
                          "Argument max-uploads must be an integer between 0 and 2147483647"),
    "InvalidPart": ("InvalidPart", 400,
                    "One or more of the specified parts could not be found.  The part may not have "
                    "been uploaded, or the specified entity tag may not match the part's entity tag."),
    "InvalidPartOrder": ("InvalidPartOrder", 400,
                         "The list of parts was not in ascending order. The parts list must be "
                         "specified in order by part number."),
    "MalformedXML": ("MalformedXML", 400,
                     "The XML you provided was not well-formed or did not validate against our "
                     "published schema."),
    "MetadataTooLarge": ("MetadataTooLarge", 400,
                         "Your metadata headers exceed the maximum allowed metadata size"),
    "MissingFields": ("MissingFields", 400, "Missing fields in request."),
    "MissingContentLength": ("MissingContentLength", 411,
                             "You must provide the Content-Length HTTP header."),
    "NoSuchBucket": ("NoSuchBucket", 404, "The specified bucket does not exist"),
    "NoSuchBucketPossibleAPIEndpoint": (
        "ErrNoSuchBucketPossibleAPIEndpoint", 404,
        'Repository "api" not found; this can happen if your endpoint URL mistakenly ends in '
        '"/api/v1".'),
    "NoSuchKey": ("NoSuchKey", 404, "The specified key does not exist."),
    "NoSuchUpload": ("NoSuchUpload", 404,
                     "The specified multipart upload does not exist. The upload ID may be invalid, "
                     "or the upload may have been aborted or completed."),
    "NotImplemented": ("NotImplemented", 501,
                       "A header you provided implies functionality that is not implemented"),
    "PreconditionFailed": ("PreconditionFailed", 412,
                           "At least one of the pre-conditions you specified did not hold"),
    "RequestTimeTooSkewed": ("RequestTimeTooSkewed", 403,
                             "The difference between the request time and the server's time is "
                             "too large."),
    "SignatureDoesNotMatch": ("SignatureDoesNotMatch", 403,
                              "The request signature we calculated does not match the signature "
                              "you provided. Check your key and signing method."),
    "MethodNotAllowed": ("MethodNotAllowed", 405,
                         "The specified method is not allowed against this resource."),
    "BucketAlreadyExists": ("BucketAlreadyExists", 409,
                            "The requested bucket name is not available. The bucket namespace is "
                            "shared by all users of the system. Please select a different name "
                            "and try again."),
    "CredMalformed": ("AuthorizationQueryParametersError", 400,
                      "Error parsing the X-Amz-Credential parameter; the Credential is mal-formed; "
                      "expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\"."),
    "MissingCredTag": ("InvalidRequest", 400, "Missing Credential field for this request."),
    "MalformedDate": ("MalformedDate", 400,
                      "Invalid date format header, expected to be in ISO8601, RFC1123 or RFC1123Z "
                      "time format."),
    "MalformedCredentialDate": ("AuthorizationQueryParametersError", 400,
                                "Error parsing the X-Amz-Credential parameter; incorrect date "
                                "format \"%s\". This date in the credential must be in the format "
                                "\"yyyyMMdd\"."),
    "InvalidCredentialDate": ("AuthorizationHeaderMalformed", 400,
                              "The authorization header is malformed; Invalid credential date. "
                              "Date is not the same as X-Amz-Date."),
    "MalformedExpires": ("AuthorizationQueryParametersError", 400, "X-Amz-Expires should be a number"),
    "NegativeExpires": ("AuthorizationQueryParametersError", 400, "X-Amz-Expires must be non-negative"),
    "MaximumExpires": ("AuthorizationQueryParametersError", 400,
                       "X-Amz-Expires must be less than a week (in seconds); that is, the given "
                       "X-Amz-Expires must be less than 604800 seconds"),
    "MissingDateHeader": ("AccessDenied", 400,
                          "AWS authentication requires a valid Date or x-amz-date header"),
    "InvalidQuerySignatureAlgo": ("AuthorizationQueryParametersError", 400,
                                  "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"."),
    "ExpiredPresignRequest": ("AccessDenied", 403, "Request has expired"),
    "RequestNotReadyYet": ("AccessDenied", 403, "Request is not valid yet"),
    "SlowDown": ("SlowDown", 503, "Please reduce your request"),
    "BadRequest": ("BadRequest", 400, "400 BadRequest"),
    "ContentSHA256Mismatch": ("XAmzContentSHA256Mismatch", 400,
                              "The provided 'x-amz-content-sha256' header does not match what was "
                              "computed."),
    "ERRLakeFSNotSupported": ("ERRLakeFSNotSupported", 405, "This operation is not supported in LakeFS"),
    "ReadOnlyRepository": ("ErrReadOnlyRepository", 403, "Attempted to write to a read-only repository"),
}


class S3Error(Exception):
    """An error answer. `detail`, when given, is appended to the message
    (lakeFS itself logs such details instead; we put them where a test
    can see them)."""

    def __init__(self, name, detail=None):
        code, status, message = CODES[name]
        super().__init__("%s: %s" % (code, detail or message))
        self.name = name
        self.code = code
        self.status = status
        self.message = message if not detail else "%s (%s)" % (message, detail)


def new_request_id():
    return str(uuid.uuid4())


def error_document(err, request_id, bucket="", key="", resource="", region="us-east-1"):
    """The <Error> document lakeFS writes (field order and omissions as Go's
    marshalling of APIErrorResponse)."""
    parts = ["<Error>", xmlio.elem("Code", err.code), xmlio.elem("Message", err.message)]
    if key:
        parts.append(xmlio.elem("Key", key))
    if bucket:
        parts.append(xmlio.elem("BucketName", bucket))
    parts.append(xmlio.elem("Resource", resource))
    if region:
        parts.append(xmlio.elem("Region", region))
    parts.append(xmlio.elem("RequestId", request_id))
    parts.append(xmlio.elem("HostId", os.urandom(4).hex().upper()))
    parts.append("</Error>")
    return xmlio.document("".join(parts))
