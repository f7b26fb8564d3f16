"""Stage 1 of grading, *read*: a submission as untrusted, bounded, plain data.

A student's folder and the notebooks in it are hostile input.  This module
is the one door they come in by, and what comes out is plain data the rest
of the grader can trust the shape of:

* a :class:`Submission`: the lab id the notebook claims (a short string,
  used only to pick which of the instructor's labs it is for), and for each
  code cell its id (used only to match it to a source cell) and its source
  text.  Every metadata key of every cell, every output, attachment and
  execution count is dropped here: nothing a student wrote into metadata
  reaches the planner, so nothing in it can decide what runs;
* or an :class:`Unreadable`: why not (``not a notebook: nested 100000
  deep``), which costs that student that lab and nothing more.

Every limit is a named constant below.  No link is followed: a student's
folder is walked with ``lstat`` semantics (``os.scandir`` without following,
directories opened with ``O_NOFOLLOW`` relative to their parent's fd) and a
notebook is opened with ``O_NOFOLLOW | O_NONBLOCK`` and checked to be a
regular file with ``fstat`` on that open file, so a link swapped in after
the walk is refused too.  A link or a FIFO is noted (``skipped: symlink``),
never opened.  Each file is read once; the journal key is the hash of the
bytes read, not of whatever the path holds later.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Submission", "Unreadable", "StudentCell", "read_submission", "read_bytes", "parse_notebook",
           "walk_student_folder", "student_folders", "nesting_depth", "MAX_NOTEBOOK_BYTES", "MAX_DEPTH",
           "MAX_BYTES_PER_STUDENT",
           "MAX_CELLS", "MAX_CELL_CHARS", "MAX_FILES_PER_STUDENT", "MAX_FOLDER_DEPTH",
           "SourceTree", "read_tree", "lab_folder", "MAX_TREE_FILES", "MAX_TREE_BYTES", "MAX_TREE_DEPTH"]

# A lab notebook with its outputs and a plot or two is well under 1 MB; 16 MB
# leaves room for images a student pasted, and bounds what one file costs.
MAX_NOTEBOOK_BYTES = 16 * 1024 * 1024
# nbformat 4's deepest structure (metadata of an output of a cell) is about 6
# levels; 64 is generous, and far from Python's recursion limit (~1000).
MAX_DEPTH = 64
# Labs have 10-30 cells; 2,000 bounds the work of planning and of the run
# (which has one wall-clock limit anyway).
MAX_CELLS = 2_000
# One cell's source: a lab solution is a few hundred lines, about 20 kB.
MAX_CELL_CHARS = 200_000
# A lab id is a file stem such as 01-handshake-client.
MAX_LAB_ID_CHARS = 100
# The walk of one student's folder: an LMS zip has a few folders and files.
MAX_FILES_PER_STUDENT = 2_000
MAX_FOLDER_DEPTH = 8
# What is read of one student's notebooks in all (seven labs of ~100 kB each,
# and room for images): reading and checking 64 MB takes a few seconds.
MAX_BYTES_PER_STUDENT = 64 * 1024 * 1024
SKIP_FOLDERS = ("__MACOSX",)          # macOS zip debris; dot folders (.ipynb_checkpoints) too


@dataclass(frozen=True)
class StudentCell:
    """One code cell of a submission: nothing but its id and its text."""

    id: str
    source: str


@dataclass(frozen=True)
class Submission:
    """A notebook as the grader uses it: plain data, read once."""

    name: str                       # the file's name, for notes
    sha256: str                     # of the bytes read: the journal's key
    lab_id: str | None              # what the notebook's own metadata claims (a lab id, nothing else)
    cells: tuple[StudentCell, ...] = ()
    size: int = 0                   # bytes read


@dataclass(frozen=True)
class Unreadable:
    """A file that is not read as a notebook, and why (a note for the gradebook)."""

    name: str
    why: str                        # "not a notebook: nested 100000 deep", "skipped: symlink"
    sha256: str = ""
    skipped: bool = False           # a link or a special file: never opened
    size: int = 0                   # bytes read


def read_bytes(path: str | Path, *, dir_fd: int | None = None) -> bytes | Unreadable:
    """The bytes of the regular file at *path*, at most
    :data:`MAX_NOTEBOOK_BYTES`; a link or a special file is never followed
    or read."""
    name = Path(path).name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return Unreadable(name, "skipped: symlink (links are not followed)", skipped=True)
        return Unreadable(name, f"not a notebook: cannot be read ({exc.strerror})")
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return Unreadable(name, "skipped: not a regular file", skipped=True)
        if info.st_size > MAX_NOTEBOOK_BYTES:
            return Unreadable(name, f"not a notebook: {info.st_size / 2**20:.0f} MB, more than "
                                    f"{MAX_NOTEBOOK_BYTES // 2**20} MB", size=MAX_NOTEBOOK_BYTES)
        chunks, size = [], 0
        while size <= MAX_NOTEBOOK_BYTES:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_NOTEBOOK_BYTES:      # it grew while we read
            return Unreadable(name, f"not a notebook: more than {MAX_NOTEBOOK_BYTES // 2**20} MB")
        return b"".join(chunks)
    finally:
        os.close(fd)


# A string once its escapes are gone (or an unterminated one, to the end):
# every match that starts succeeds, so this is one pass, never a rescan from
# each next quote (which is quadratic on '"\\"\\"\\"...').
_STRING = re.compile(rb'"[^"]*(?:"|\Z)')
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


def nesting_depth(data: bytes) -> int:
    """How deep JSON *data* nests (``[[1]]`` is 2), counted without
    recursion, in time linear in its size (strings are skipped)."""
    plain = data.replace(b"\\\\", b"").replace(b'\\"', b"")     # JSON's escapes, left to right
    brackets = _STRING.sub(b"", plain).translate(None, _NOT_BRACKETS)
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)


def parse_notebook(name: str, data: bytes) -> Submission | Unreadable:
    """*data* (a file's bytes) as a :class:`Submission`, within the limits."""
    digest = hashlib.sha256(data).hexdigest()

    def bad(why: str) -> Unreadable:
        return Unreadable(name, f"not a notebook: {why}", digest, size=len(data))

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return bad("not even UTF-8 text")
    depth = nesting_depth(data)
    if depth > MAX_DEPTH:
        return bad(f"nested {depth} deep (at most {MAX_DEPTH})")
    try:
        nb = json.loads(text)
    except (ValueError, RecursionError):
        return bad(f"not JSON: it starts {text[:30]!r}")
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        return bad("it has no list of cells")
    if nb.get("nbformat") != 4:
        return bad(f"nbformat {nb.get('nbformat')!r}, not 4 (save it with a current Jupyter)")
    if len(nb["cells"]) > MAX_CELLS:
        return bad(f"{len(nb['cells'])} cells (at most {MAX_CELLS})")
    meta = nb.get("metadata")
    mine = meta.get("mailkit") if isinstance(meta, dict) else None
    lab_id = mine.get("lab") if isinstance(mine, dict) else None
    lab_id = lab_id if isinstance(lab_id, str) and 0 < len(lab_id) <= MAX_LAB_ID_CHARS else None
    cells = []
    for i, cell in enumerate(nb["cells"]):
        if not isinstance(cell, dict):
            return bad(f"cell {i} is not a cell")
        if cell.get("cell_type") != "code":
            continue            # text cells: the source's are used
        source = cell.get("source", "")
        if isinstance(source, list) and all(isinstance(s, str) for s in source):
            source = "".join(source)
        if not isinstance(source, str):
            return bad(f"cell {i}'s source is not text")
        if len(source) > MAX_CELL_CHARS:
            return bad(f"cell {i} holds {len(source)} characters (at most {MAX_CELL_CHARS})")
        cid = cell.get("id")
        cells.append(StudentCell(cid if isinstance(cid, str) and len(cid) <= 64 else "", source))
    return Submission(name, digest, lab_id, tuple(cells), len(data))


def read_submission(path: str | Path, *, dir_fd: int | None = None) -> Submission | Unreadable:
    """Read one notebook: never follows a link, never raises for what the
    file holds."""
    data = read_bytes(path, dir_fd=dir_fd)
    if isinstance(data, Unreadable):
        return data
    return parse_notebook(Path(path).name, data)


@dataclass
class StudentFolder:
    """What one student's folder holds: the notebooks read, and what was skipped."""

    name: str
    notebooks: dict[str, Submission | Unreadable] = field(default_factory=dict)   # relative path -> read
    bytes_read: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (relative path, "skipped: symlink ...")


def student_folders(root: str | Path) -> tuple[list[StudentFolder], list[str]]:
    """Every student folder directly in *root* (the instructor's folder: it
    may itself be a link), each walked without following links; and the
    names of entries that are not a student's folder."""
    root = Path(root).resolve()
    folders, ignored = [], []
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with os.scandir(root_fd) as entries:
            names = sorted((e.name, e.is_dir(follow_symlinks=False), e.is_symlink()) for e in entries)
        for name, is_dir, is_link in names:
            if name.startswith("."):
                continue
            if is_link:
                folder = StudentFolder(name, skipped=[("", f"skipped: symlink {name}/ (links are not followed)")])
                folders.append(folder)
            elif not is_dir:
                ignored.append(name)
            else:
                folders.append(walk_student_folder(name, root_fd))
    finally:
        os.close(root_fd)
    return folders, ignored


def walk_student_folder(name: str, parent_fd: int) -> StudentFolder:
    """Read every ``.ipynb`` under the folder *name* of *parent_fd*: no link
    followed, at most :data:`MAX_FOLDER_DEPTH` deep and
    :data:`MAX_FILES_PER_STUDENT` entries."""
    folder = StudentFolder(name)
    seen = 0

    def walk(dir_fd: int, prefix: str, depth: int) -> None:
        nonlocal seen
        with os.scandir(dir_fd) as it:
            entries = sorted(((e.name, e.is_symlink(), e.is_dir(follow_symlinks=False),
                               e.is_file(follow_symlinks=False)) for e in it))
        for entry, is_link, is_dir, is_file in entries:
            seen += 1
            if seen > MAX_FILES_PER_STUDENT:
                if seen == MAX_FILES_PER_STUDENT + 1:
                    folder.skipped.append(("", f"skipped: more than {MAX_FILES_PER_STUDENT} files"))
                return
            rel = f"{prefix}{entry}"
            if entry.startswith(".") or entry in SKIP_FOLDERS:
                continue        # .ipynb_checkpoints, hidden files, macOS zip debris
            if is_link:
                if entry.endswith(".ipynb") or not is_file:
                    folder.skipped.append((rel, f"skipped: symlink {rel} (links are not followed)"))
                continue
            if is_dir:
                if depth >= MAX_FOLDER_DEPTH:
                    folder.skipped.append((rel, f"skipped: {rel}/ (more than {MAX_FOLDER_DEPTH} folders deep)"))
                    continue
                try:
                    sub = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                  dir_fd=dir_fd)
                except OSError as exc:
                    folder.skipped.append((rel, f"skipped: {rel}/ ({exc.strerror})"))
                    continue
                try:
                    walk(sub, rel + "/", depth + 1)
                finally:
                    os.close(sub)
            elif entry.endswith(".ipynb"):
                if not is_file:
                    folder.skipped.append((rel, f"skipped: {rel} is not a regular file"))
                    continue
                if folder.bytes_read >= MAX_BYTES_PER_STUDENT:
                    folder.skipped.append((rel, f"skipped: {rel} (more than {MAX_BYTES_PER_STUDENT // 2**20} MB "
                                                "of notebooks in this folder)"))
                    continue
                read = read_submission(entry, dir_fd=dir_fd)
                folder.bytes_read += read.size
                if isinstance(read, Unreadable) and read.skipped:
                    folder.skipped.append((rel, f"{read.why.split(' (')[0]} {rel}"))
                else:
                    folder.notebooks[rel] = read

    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
    except OSError as exc:
        what = "symlink" if exc.errno == errno.ELOOP else exc.strerror
        folder.skipped.append(("", f"skipped: {what} {name}/"))
        return folder
    try:
        walk(fd, "", 1)
    finally:
        os.close(fd)
    return folder


# -- a folder of source code (a server in any language) ---------------------------

# A student's server is a few source files and a run script or Makefile:
# 200 files and 4 MB in all are far more, and bound what the grader copies
# into the sandbox.  Four folders deep holds src/main/java/... (Maven's
# layout needs more: such a student zips it flatter).
MAX_TREE_FILES = 200
MAX_TREE_BYTES = 4 * 1024 * 1024
MAX_TREE_DEPTH = 4


@dataclass(frozen=True)
class SourceTree:
    """A folder of source code as the grader uses it: plain data, read once.
    ``files`` holds (relative path, bytes, executable?) of the regular files;
    links and special files were never opened, only noted in ``skipped``."""

    name: str
    sha256: str
    files: tuple[tuple[str, bytes, bool], ...] = ()
    skipped: tuple[str, ...] = ()

    @property
    def names(self) -> set[str]:
        return {rel for rel, _, _ in self.files}


def read_tree(name: str, parent_fd: int) -> SourceTree | Unreadable:
    """Read the folder *name* of *parent_fd* (a student's lab folder): every
    regular file, no link followed (``O_NOFOLLOW`` on each folder and file,
    checked with ``fstat``), at most :data:`MAX_TREE_FILES` files,
    :data:`MAX_TREE_BYTES` bytes and :data:`MAX_TREE_DEPTH` folders deep."""
    files: list[tuple[str, bytes, bool]] = []
    skipped: list[str] = []
    total = 0

    class TooBig(Exception):
        pass

    def walk(dir_fd: int, prefix: str, depth: int) -> None:
        nonlocal total
        with os.scandir(dir_fd) as it:
            entries = sorted((e.name, e.is_symlink(), e.is_dir(follow_symlinks=False)) for e in it)
        for entry, is_link, is_dir in entries:
            rel = f"{prefix}{entry}"
            if entry in SKIP_FOLDERS or entry in (".git", ".DS_Store"):
                continue
            if is_link:
                skipped.append(f"skipped: symlink {rel} (links are not followed)")
                continue
            if is_dir:
                if depth >= MAX_TREE_DEPTH:
                    raise TooBig(f"{rel}/ is more than {MAX_TREE_DEPTH} folders deep")
                sub = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
                try:
                    walk(sub, rel + "/", depth + 1)
                finally:
                    os.close(sub)
                continue
            if len(files) >= MAX_TREE_FILES:
                raise TooBig(f"more than {MAX_TREE_FILES} files")
            fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
            try:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode):
                    skipped.append(f"skipped: {rel} is not a regular file")
                    continue
                data = os.read(fd, MAX_TREE_BYTES - total + 1)
            finally:
                os.close(fd)
            total += len(data)
            if total > MAX_TREE_BYTES:
                raise TooBig(f"more than {MAX_TREE_BYTES // 2**20} MB")
            files.append((rel, data, bool(info.st_mode & 0o111)))

    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
    except OSError as exc:
        what = "symlink" if exc.errno == errno.ELOOP else exc.strerror
        return Unreadable(name, f"skipped: {what} {name}/", skipped=True)
    try:
        walk(fd, "", 1)
    except TooBig as exc:
        return Unreadable(name, f"not graded: {exc} (at most {MAX_TREE_FILES} files, "
                                f"{MAX_TREE_BYTES // 2**20} MB, {MAX_TREE_DEPTH} folders deep)")
    except OSError as exc:
        return Unreadable(name, f"not graded: a file could not be read ({exc.strerror})")
    finally:
        os.close(fd)
    digest = hashlib.sha256()
    for rel, data, executable in files:
        digest.update(f"{rel}\0{len(data)}\0{int(executable)}\0".encode() + data)
    return SourceTree(name, digest.hexdigest(), tuple(files), tuple(skipped))


def lab_folder(root: str | Path, student: str, wanted) -> tuple[str, SourceTree | Unreadable] | None:
    """The folder in *student*'s folder under *root* that ``wanted(name)``
    picks (a lab's folder), read with :func:`read_tree`; None if there is none."""
    root_fd = os.open(Path(root).resolve(), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fd = os.open(student, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root_fd)
        except OSError:
            return None
        try:
            with os.scandir(fd) as it:
                found = sorted((e.name, e.is_symlink()) for e in it
                               if wanted(e.name) and (e.is_symlink() or e.is_dir(follow_symlinks=False)))
            if not found:
                return None
            name, is_link = found[0]
            if is_link:
                return name, Unreadable(name, f"skipped: symlink {name}/ (links are not followed)", skipped=True)
            return name, read_tree(name, fd)
        finally:
            os.close(fd)
    finally:
        os.close(root_fd)
