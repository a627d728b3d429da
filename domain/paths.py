"""Rules for the file references of a render job: template, data and output paths, and the
paths inside its nexrender_config.

A reference is either an absolute local path (POSIX ``/mnt/renders/promo.aep``, Windows drive
``C:\\jobs\\promo.aep`` or ``C:/jobs/promo.aep``, UNC ``\\\\nas\\share\\promo.aep``) or a URI
with one of the accepted schemes (`URI_SCHEMES` unless RENDERTRACK_ALLOWED_URI_SCHEMES says
otherwise). A ``file:`` URI is a local path. Local paths must lie inside the allowed roots when
there are any. Pure: standard library only.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from domain.errors import FieldError

MAX_PATH_LENGTH = 1024
URI_SCHEMES = ("file", "http", "https", "s3", "gs", "ftp", "sftp")
TEMPLATE_EXTENSIONS = (".aep", ".aepx")
DATA_EXTENSIONS = (".json", ".csv", ".tsv")
OUTPUT_EXTENSIONS = (
    ".mp4", ".mov", ".avi", ".mxf", ".webm", ".gif", ".png", ".jpg", ".jpeg",
    ".tif", ".tiff", ".exr", ".psd", ".wav", ".mp3", ".aac",
)  # fmt: skip
IMAGE_SEQUENCE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".exr", ".psd")

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_DRIVE = re.compile(r"[A-Za-z]:")
_DRIVE_ABSOLUTE = re.compile(r"[A-Za-z]:[\\/]")
_DRIVE_IN_URI_PATH = re.compile(r"/[A-Za-z]:(?=[\\/]|$)")
_UNC = re.compile(r"\\\\[^\\/]+[\\/][^\\/]+")
_SEPARATORS = re.compile(r"[\\/]")
_FRAME_PATTERN = re.compile(r"\[#+\]")
_ROOT_SEPARATORS = re.compile(r"[;\r\n]")
_SCHEME_SETTING = re.compile(r"[a-z][a-z0-9+.-]*")
_LOCAL_HOSTS = ("", "localhost")


def _one_of(items: Sequence[str]) -> str:
    return ", ".join(items[:-1]) + " or " + items[-1] if len(items) > 1 else "".join(items)


def _form_rule(schemes: Sequence[str], *, relative: bool = False) -> str:
    forms = "an absolute path" + (f" or a {_one_of(schemes)} URI" if schemes else "")
    if relative:
        return f"must be a path inside the job's folder (relative, without '..'), {forms}"
    return f"must be {forms}"


@dataclass(frozen=True)
class _Reference:
    """A parsed reference: `path` is judged for '..' and the extension; `local` is the
    filesystem path that allowed roots apply to (None for a remote URI)."""

    path: str
    local: str | None


def has_control_characters(text: str) -> bool:
    """Whether `text` holds a character of unicode category Cc (NUL, \\t, \\n, \\x1b, \\x7f...)."""
    return any(unicodedata.category(char) == "Cc" for char in text)


def is_absolute_path(path: str) -> bool:
    """A POSIX absolute path, a Windows drive path with a separator after the colon, or UNC."""
    if _DRIVE.match(path):
        return _DRIVE_ABSOLUTE.match(path) is not None
    return path.startswith("/") or _UNC.match(path) is not None


def names_a_place(text: str) -> bool:
    """Whether free text names somewhere outside a job's folder: an absolute or drive path, or
    a URI with an authority (`scheme://`). Plain words with a colon (`note: x`) do not."""
    return is_absolute_path(text) or _DRIVE.match(text) is not None or "://" in text


def _is_windows_path(path: str) -> bool:
    return _DRIVE.match(path) is not None or path.startswith("\\\\")


def _scheme_name(scheme: str) -> str:
    return scheme if len(scheme) <= 16 else scheme[:16] + "..."


def _is_relative(value: str) -> bool:
    """A path with no drive, no root, no UNC prefix and no scheme: `out/promo.mp4`."""
    return not (
        _DRIVE.match(value) or value.startswith(("/", "\\")) or _SCHEME.match(value) is not None
    )


def _parse(value: str, schemes: Sequence[str], *, relative: bool = False) -> _Reference | str:
    """The parsed reference, or the message saying why `value` is not one. With `relative`, a
    relative path is accepted as one inside the job's own folder (no allowed roots apply)."""
    rule = _form_rule(schemes, relative=relative)
    if relative and _is_relative(value):
        return _Reference(path=value, local=None)
    if _DRIVE.match(value):  # `C:\x` is a drive, not a URI with scheme `c`
        if _DRIVE_ABSOLUTE.match(value):
            return _Reference(path=value, local=value)
        return f"{rule} (a drive letter needs '\\' after the colon, e.g. C:\\jobs\\x.aep)"
    if value.startswith("\\\\"):
        if _UNC.match(value):
            return _Reference(path=value, local=value)
        return f"{rule} (a UNC path needs a server and a share: \\\\server\\share\\...)"
    if value.startswith("\\"):
        return f"{rule} (a path from '\\' needs a drive letter: C:\\jobs\\x.aep)"
    if value.startswith("/"):
        return _Reference(path=value, local=value)
    scheme = _SCHEME.match(value)
    if scheme is None:
        return f"{rule} (a relative path is not accepted)"
    return _parse_uri(value, scheme.group(1).lower(), schemes, rule)


def _parse_uri(value: str, scheme: str, schemes: Sequence[str], rule: str) -> _Reference | str:
    if scheme not in schemes:
        return f"{rule} (scheme '{_scheme_name(scheme)}' is not accepted)"
    # `[####]` is a frame pattern, not the start of a fragment: keep it in the path.
    protected = _FRAME_PATTERN.sub(lambda match: match.group(0).replace("#", "%23"), value)
    try:
        parts = urlsplit(protected)
        host = parts.hostname
    except ValueError:
        return f"{rule} (this {scheme} URI cannot be parsed)"
    path = unquote(parts.path)
    if scheme == "file":
        return _file_reference(parts.netloc, path, rule)
    if not host:
        return f"must name a host (or bucket) after '{scheme}://'"
    return _Reference(path=path, local=None)


def _file_reference(netloc: str, path: str, rule: str) -> _Reference | str:
    if _DRIVE.fullmatch(netloc):  # file://C:/jobs/x.aep
        local = netloc + path
    elif netloc.lower() in _LOCAL_HOSTS:
        local = path[1:] if _DRIVE_IN_URI_PATH.match(path) else path
    else:  # file://server/share/x.aep names a UNC path
        local = "\\\\" + netloc + path.replace("/", "\\")
    if not is_absolute_path(local):
        return f"{rule} (a file URI needs an absolute path: file:///mnt/x.aep)"
    return _Reference(path=path, local=local)


def _fully_unquote(text: str) -> str:
    for _ in range(4):  # `%252e` decodes to `%2e`, then to `.`
        decoded = unquote(text)
        if decoded == text:
            break
        text = decoded
    return text


def _is_parent_segment(segment: str) -> bool:
    """'..', and what Windows may read as it: dots and spaces only, two dots or more."""
    return segment.count(".") >= 2 and not segment.strip(". ")


def has_parent_segment(path: str) -> bool:
    """Whether `path` (percent-decoded) has a '..' segment between '/' or '\\' separators."""
    return any(_is_parent_segment(part) for part in _SEPARATORS.split(_fully_unquote(path)))


def _matching_extension(name: str, extensions: Sequence[str]) -> str | None:
    lowered = name.lower()
    return next((ext for ext in extensions if lowered.endswith(ext) and lowered != ext), None)


def _extension_problem(path: str, extensions: Sequence[str], frame_pattern: bool) -> str | None:
    name = _SEPARATORS.split(path)[-1]
    extension = _matching_extension(name, extensions)
    if extension is None:
        return f"must end in {_one_of(extensions)}"
    patterns = len(_FRAME_PATTERN.findall(name)) if frame_pattern else 0
    if patterns > 1:
        return "must carry at most one frame pattern such as [#####]"
    if patterns == 1 and extension not in IMAGE_SEQUENCE_EXTENSIONS:
        sequences = _one_of(IMAGE_SEQUENCE_EXTENSIONS)
        return f"may carry a frame pattern such as [#####] only when it ends in {sequences}"
    return None


def _path_key(path: str, windows: bool) -> tuple[str, tuple[str, ...]]:
    """(anchor, segments) of a path, case-folded with '/' read as '\\' when `windows`."""
    if windows:
        text = path.replace("/", "\\").casefold()
        if text.startswith("\\\\"):
            anchor, rest = "\\\\", text[2:]
        elif _DRIVE.match(text):
            anchor, rest = text[:2], text[2:]
        else:
            anchor, rest = ("\\", text) if text.startswith("\\") else ("", text)
        parts = rest.split("\\")
    else:
        anchor, parts = ("/" if path.startswith("/") else ""), path.split("/")
    return anchor, tuple(part for part in parts if part not in ("", "."))


def is_inside(path: str, root: str) -> bool:
    """Whether `path` is `root` or lies below it on a separator boundary. Compared as Windows
    paths (case-insensitive, '/' same as '\\') when either is a drive or UNC path."""
    windows = _is_windows_path(path) or _is_windows_path(root)
    path_anchor, path_parts = _path_key(path, windows)
    root_anchor, root_parts = _path_key(root, windows)
    return path_anchor == root_anchor and path_parts[: len(root_parts)] == root_parts


def _inside_allowed_roots(local: str | None, allowed_roots: Sequence[str]) -> bool:
    """True for a remote URI (local is None) and when no roots are configured."""
    if local is None or not allowed_roots:
        return True
    return any(is_inside(local, root) for root in allowed_roots)


def _gate_problem(value: str) -> str | None:
    if not value:
        return "must not be empty"
    if len(value) > MAX_PATH_LENGTH:
        return f"must be at most {MAX_PATH_LENGTH} characters"
    if has_control_characters(value):
        return "must not contain control characters"
    return None


def _path_messages(
    value: object,
    extensions: Sequence[str] | None,
    allowed_roots: Sequence[str],
    uri_schemes: Sequence[str],
    *,
    frame_pattern: bool = False,
    relative: bool = False,
) -> list[str]:
    """The rule shared by every path: length, control characters, form, '..', the extension
    (when `extensions` is given), and the allowed roots for a local path."""
    if not isinstance(value, str):
        return ["must be a string"]
    gate = _gate_problem(value)
    reference = _parse(value, uri_schemes, relative=relative) if gate is None else gate
    if isinstance(reference, str):
        return [reference]
    messages: list[str] = []
    traversal = has_parent_segment(reference.path)
    if traversal:
        messages.append("must not contain a '..' segment")
    if extensions is not None:
        extension = _extension_problem(reference.path, extensions, frame_pattern)
        if extension is not None:
            messages.append(extension)
    if not traversal and not _inside_allowed_roots(reference.local, allowed_roots):
        messages.append(f"must lie inside one of the allowed roots: {', '.join(allowed_roots)}")
    return messages


def render_path_problems(
    field: str,
    value: str,
    extensions: Sequence[str],
    allowed_roots: Sequence[str] = (),
    *,
    frame_pattern: bool = False,
    uri_schemes: Sequence[str] = URI_SCHEMES,
) -> list[FieldError]:
    """Every problem of one path: length, control characters, form (absolute path or URI with
    one of `uri_schemes`), '..' segments, extension, and - for local paths, `file:` URIs
    included - the allowed roots. Never raises."""
    messages = _path_messages(
        value, extensions, allowed_roots, uri_schemes, frame_pattern=frame_pattern
    )
    return [FieldError(field, message) for message in messages]


def reference_problems(
    field: str,
    value: object,
    allowed_roots: Sequence[str] = (),
    *,
    uri_schemes: Sequence[str] = URI_SCHEMES,
    relative: bool = False,
) -> list[FieldError]:
    """The problems of a path that carries no extension rule (the paths inside a
    nexrender_config): the same form, '..' and allowed-roots rule as `render_path_problems`.
    With `relative`, a relative path without '..' is also accepted: Nexrender reads it inside
    the job's own folder. Never raises."""
    messages = _path_messages(value, None, allowed_roots, uri_schemes, relative=relative)
    return [FieldError(field, message) for message in messages]


def parse_allowed_roots(value: str | None) -> tuple[str, ...]:
    """RENDERTRACK_ALLOWED_ROOTS: roots separated by ';' or newlines, trimmed, blanks ignored.
    Each must be an absolute path (POSIX, Windows drive or UNC) without '..', else ValueError."""
    roots: list[str] = []
    for entry in _ROOT_SEPARATORS.split(value or ""):
        root = entry.strip()
        if not root:
            continue
        if has_control_characters(root) or not is_absolute_path(root):
            raise ValueError(
                f"RENDERTRACK_ALLOWED_ROOTS: {root!r} is not an absolute path "
                "(POSIX /mnt/renders, Windows drive D:\\renders or UNC \\\\server\\share)"
            )
        if has_parent_segment(root):
            raise ValueError(f"RENDERTRACK_ALLOWED_ROOTS: {root!r} must not contain '..'")
        roots.append(root)
    return tuple(roots)


def parse_uri_schemes(value: str | None) -> tuple[str, ...]:
    """RENDERTRACK_ALLOWED_URI_SCHEMES: schemes separated by commas, trimmed and lower-cased,
    blanks and repeats ignored; unset or blank means `URI_SCHEMES`. Each must be letters, digits,
    '+', '.' or '-', starting with a letter (no ':' or '//'), else ValueError."""
    schemes: list[str] = []
    for entry in (value or "").split(","):
        raw = entry.strip()
        scheme = raw.lower()
        if not raw:
            continue
        if not raw.isascii() or not _SCHEME_SETTING.fullmatch(scheme):
            raise ValueError(
                f"RENDERTRACK_ALLOWED_URI_SCHEMES: {raw!r} is not a URI scheme "
                "(letters, digits, '+', '.' or '-', starting with a letter, without ':' or "
                "'//', e.g. https)"
            )
        if scheme not in schemes:
            schemes.append(scheme)
    return tuple(schemes) if schemes else URI_SCHEMES
