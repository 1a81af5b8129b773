"""hypothesis's example database in a directory of the repository, for the generated
programs (importable as ``kept_failures``: ``tests`` is on the path)."""

from __future__ import annotations

from hypothesis.database import DirectoryBasedExampleDatabase


class KeptFailures(DirectoryBasedExampleDatabase):
    """An example database that never forgets: a program that failed once is saved in
    the directory (to be committed with its fix) and replayed by every later run, even
    after it passes, where hypothesis would delete it."""

    def delete(self, key: bytes, value: bytes) -> None:
        pass

    def move(self, src: bytes, dest: bytes, value: bytes) -> None:
        self.save(dest, value)
