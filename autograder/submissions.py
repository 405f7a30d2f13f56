"""Find each student's notebook in a download: a folder per student, or an LMS bulk download.

Three layouts are read, mixed freely in one folder (or one .zip of it):

- a folder per student, named after the student, holding `LAB.ipynb` anywhere below it (nbgrader's
  `submitted/STUDENT/LAB/LAB.ipynb` works too);
- Moodle's "download all submissions": a folder per student named `Full Name_ID_assignsubmission_file_`
  (the student is `Full_Name`, `ID` the participant id Moodle's grading worksheet matches on);
- Canvas's "download submissions": flat files `name_USERID_SUBMISSIONID_file.ipynb`, late ones
  `name_LATE_USERID_SUBMISSIONID_file.ipynb`, a re-upload of the same file `file-1.ipynb` (the student is
  `name`, `USERID` the id Canvas's gradebook import matches on).

A student with several notebooks is graded on the one named after the lab, the latest of those (highest
Canvas submission id, then highest `-N` re-upload suffix; in a folder, the newest). Every file that is not
graded is listed with the reason (`Collected.unused`), so a loose notebook never vanishes silently.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

# Canvas: name[_LATE]_userid_submissionid_originalname; `name` is the student's name, lower-case, no spaces.
CANVAS = re.compile(r"^(?P<name>[^_]+?)(?P<late>_LATE)?_(?P<user>\d+)_(?P<submission>\d+)_(?P<file>.+)$")
# Moodle: "Full Name_participantid_assignsubmission_file_" (online-text submissions end in _onlinetext_).
MOODLE = re.compile(r"^(?P<name>.+)_(?P<user>\d+)_assignsubmission_(?P<kind>[a-z]+)_?$")
RESUBMISSION = re.compile(r"-(\d+)$")  # Canvas renames a re-uploaded `lab.ipynb` to `lab-1.ipynb`
NOISE = {".DS_Store", "Thumbs.db", "desktop.ini"}


@dataclass
class Submission:
    """One student's notebook (None when they handed in none) and what the download says about them."""

    student: str  # the row name in grades.csv and the feedback file name
    notebook: Path | None
    late: bool = False
    lms_id: str = ""  # Canvas user id or Moodle participant id ("" for a plain folder)
    name: str = ""  # the name as the download spells it
    source: str = ""  # the file or folder it came from, relative to the download


@dataclass
class Collected:
    submissions: dict[str, Submission] = field(default_factory=dict)
    unused: list[tuple[str, str]] = field(default_factory=list)  # (path in the download, why it was not graded)


def safe_id(name: str) -> str:
    """A student id nbgrader and file systems accept: letters, digits, '.', '_' and '-'."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip("._") or "student"


def unpack(download: Path, scratch: Path) -> Path:
    """The folder to read: `download` itself, or a zip unpacked into `scratch` (a single wrapping
    folder that is not itself a student's is stepped into)."""
    if download.suffix.lower() != ".zip":
        if not download.is_dir():
            raise SystemExit(f"SUBMISSIONS should be a folder or a .zip of one, got {download}")
        return download
    unpacked = scratch / "unzipped"
    with zipfile.ZipFile(download) as archive:
        archive.extractall(unpacked)
    entries = [p for p in unpacked.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    if (len(entries) == 1 and entries[0].is_dir() and not MOODLE.match(entries[0].name)
            and not list(entries[0].glob("*.ipynb"))):
        return entries[0]
    return unpacked


def _resubmission(stem: str) -> int:
    found = RESUBMISSION.search(stem)
    return int(found.group(1)) if found else 0


def _ignored(path: Path) -> str | None:
    """Why a file is not even a candidate (None: it is)."""
    if path.name in NOISE or "__MACOSX" in path.parts or path.name.startswith("._"):
        return "system file"
    if ".ipynb_checkpoints" in path.parts:
        return "Jupyter checkpoint (an autosave copy)"
    if path.suffix != ".ipynb":
        return "not a notebook"
    return None


def _from_folder(folder: Path, root: Path, lab: str, collected: Collected) -> Path | None:
    """The notebook to grade in a student's folder; its other files go to `collected.unused`."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    notebooks = [p for p in files if _ignored(p) is None]
    named = [p for p in notebooks if RESUBMISSION.sub("", p.stem) == lab]
    pool = named or notebooks
    chosen = max(pool, key=lambda p: (_resubmission(p.stem), p.stat().st_mtime)) if pool else None
    for p in files:
        if p != chosen:
            why = _ignored(p) or f"another notebook of this student; graded {chosen.name}"
            collected.unused.append((str(p.relative_to(root)), why))
    return chosen


def _add(collected: Collected, sub: Submission) -> None:
    """Add `sub`, keeping ids unique: a second student of the same name gets their LMS id appended."""
    if sub.student in collected.submissions:
        sub.student = safe_id(f"{sub.student}_{sub.lms_id or len(collected.submissions)}")
    collected.submissions[sub.student] = sub


def collect(folder: Path, lab: str) -> Collected:
    """Every student's submission in `folder` (any mix of the three layouts) and every unused file."""
    collected = Collected()
    canvas: dict[str, list[tuple[tuple[bool, int, int], Path, re.Match]]] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.name == "__MACOSX":
            continue
        if entry.is_dir():
            moodle = MOODLE.match(entry.name)
            if moodle and moodle.group("kind") != "file":
                for p in sorted(q for q in entry.rglob("*") if q.is_file()):
                    collected.unused.append((str(p.relative_to(folder)),
                                             f"a Moodle '{moodle.group('kind')}' submission, not a file upload"))
                continue
            notebook = _from_folder(entry, folder, lab, collected)
            name = moodle.group("name") if moodle else entry.name
            _add(collected, Submission(safe_id(name), notebook, False, moodle.group("user") if moodle else "",
                                       name, entry.name))
            continue
        why = _ignored(entry)
        match = CANVAS.match(entry.name)
        if why is None and match:
            stem = Path(match.group("file")).stem  # a notebook named after the lab wins over any other
            order = (RESUBMISSION.sub("", stem) == lab, int(match.group("submission")), _resubmission(stem))
            canvas.setdefault(match.group("user"), []).append((order, entry, match))
        elif why is None:
            collected.unused.append((entry.name, "a loose notebook: not named like a Canvas download "
                                     "(name_USERID_SUBMISSIONID_file.ipynb); put it in a folder named after the student"))
        else:
            collected.unused.append((entry.name, why if not match else f"{why} (from {match.group('name')})"))
    for user, files in canvas.items():
        files.sort(key=lambda item: item[0])
        _, latest, match = files[-1]
        for order, older, _ in files[:-1]:
            what = "an earlier submission" if order[0] == files[-1][0][0] else "another upload"
            collected.unused.append((older.name, f"{what} of {match.group('name')}; graded {latest.name}"))
        _add(collected, Submission(safe_id(match.group("name")), latest, bool(match.group("late")), user,
                                   match.group("name"), latest.name))
    collected.submissions = dict(sorted(collected.submissions.items()))
    return collected
