"""lakeFS references: name rules, the modifier grammar and resolution.

Follows pkg/graveler/ref/parse_ref.go and resolve_ref.go:
  - a ref is a base name followed by modifiers: ~N (N-th first parent,
    N defaults to 1), ^N (N-th parent; ^0 is the commit itself), @ (the
    branch's committed content, no staged changes) and $ (the branch with
    its staging area). @ and $ take no number, apply only to a branch and
    only as the sole modifier; ~ and ^ combine freely and turn any base into
    a plain commit.
  - the base resolves, in order, as a full commit ID (64 hex), a branch, a
    tag, then a unique commit-ID prefix of 1 to 64 hex digits (lakeFS has no
    minimum prefix length). Unknown or ambiguous: not found.
Name rules are pkg/validator/validate.go and pkg/graveler/validate.go. Go's
\\w and \\s are ASCII-only, hence re.ASCII and the explicit classes.
"""
import re

from . import store as st

BRANCH_RE = re.compile(r"\w[-\w]*", re.ASCII)
REPO_RE = re.compile(r"[a-z0-9][a-z0-9-]{2,62}")
REF_RE = re.compile(r"[^\t\n\f\r ]+")
HASH_RE = re.compile(r"[a-fA-F0-9]{1,64}")
_NUM_RE = re.compile(r"[+-]?[0-9]+")
_MOD_CHARS = "~^@$"


class RefNotFound(st.NotFound):
    pass


class InvalidRef(st.InvalidValue):
    pass


def valid_branch(name):
    return bool(BRANCH_RE.fullmatch(name))


def valid_repo(name):
    return bool(REPO_RE.fullmatch(name))


def valid_ref(ref):
    return bool(REF_RE.fullmatch(ref))


def valid_tag(name):
    """git-check-ref-format-like rules of ValidateTagID."""
    if not name or name == "@" or name.endswith(".") or name.endswith(".lock"):
        return False
    if ".." in name or "/" in name or "@{" in name:
        return False
    if any(c in name for c in "^:?*[\\"):
        return False
    return all(ord(c) > 0x20 for c in name)


class Resolved:
    """What a ref names. `staging` is True when reads include the branch's
    uncommitted changes (a plain branch name, or branch$); `explicit_staging`
    only for branch$ (graveler's ResolvedBranchModifierStaging), which the
    REST API refuses where it needs a commit."""
    __slots__ = ("kind", "branch", "commit_id", "staging", "explicit_staging")

    def __init__(self, kind, commit_id, branch=None, staging=False, explicit_staging=False):
        self.kind = kind            # "branch", "tag" or "commit"
        self.commit_id = commit_id
        self.branch = branch
        self.staging = staging
        self.explicit_staging = explicit_staging


def parse(ref):
    """Splits a ref into (base, [(modifier char, number)])."""
    i = 0
    while i < len(ref) and ref[i] not in _MOD_CHARS:
        i += 1
    base = ref[:i]
    if not base:
        raise InvalidRef("ref: invalid value")
    mods = []
    while i < len(ref):
        j = i + 1
        while j < len(ref) and ref[j] not in _MOD_CHARS:
            j += 1
        kind, arg = ref[i], ref[i + 1:j]
        if kind in "@$":
            if arg:
                raise InvalidRef("ref: invalid value")
            n = 1
        elif not arg:
            n = 1
        elif _NUM_RE.fullmatch(arg):
            n = int(arg)
        else:
            raise InvalidRef("could not parse modifier %s: ref: invalid value" % ref[i:j])
        mods.append((kind, n))
        i = j
    return base, mods


def _resolve_base(repo, rev):
    if len(rev) == 64 and HASH_RE.fullmatch(rev) and rev in repo.commits:
        return Resolved("commit", rev)
    br = repo.branches.get(rev)
    if br is not None:
        return Resolved("branch", br.commit_id, branch=rev, staging=True)
    tag = repo.tags.get(rev)
    if tag is not None:
        return Resolved("tag", tag)
    if HASH_RE.fullmatch(rev):
        found = st.commits_with_prefix(repo, rev)
        if len(found) == 1:
            return Resolved("commit", found[0])
    raise RefNotFound("not found")


def resolve(repo, ref):
    """Resolves ref in repo (caller holds the store lock). Raises
    RefNotFound or InvalidRef."""
    if not valid_ref(ref):
        raise InvalidRef("ref: invalid value")
    base, mods = parse(ref)
    r = _resolve_base(repo, base)
    if not mods:
        return r
    cid = r.commit_id
    for kind, n in mods:
        if kind in "@$":
            if r.kind != "branch" or len(mods) != 1:
                raise InvalidRef("ref: invalid value")
            if kind == "@":
                return Resolved("branch", cid, branch=r.branch, staging=False)
            return Resolved("branch", cid, branch=r.branch, staging=True, explicit_staging=True)
        if kind == "~":
            for _ in range(n):
                c = repo.commits.get(cid)
                if c is None or not c.parents:
                    raise RefNotFound("not found")
                cid = c.parents[0]
        else:  # "^"
            if n == 0:
                continue
            c = repo.commits.get(cid)
            if c is None:
                raise RefNotFound("not found")
            if n < 0 or n > len(c.parents):
                raise InvalidRef("ref: invalid value")
            cid = c.parents[n - 1]
    return Resolved("commit", cid)


def view(store, repo, resolved):
    """The readable tree of a resolved ref (caller holds the store lock)."""
    if resolved.staging:
        br = repo.branches[resolved.branch]
        return st.View(br.view, br.keys)
    return store.commit_view(repo, repo.commits[resolved.commit_id])


def resolve_view(store, repo, ref):
    return view(store, repo, resolve(repo, ref))
