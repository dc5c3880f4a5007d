"""What a backend's ``lower(build, folder)`` returns: the one value the compiler merges into the manifest.

lower() writes its files into the artifact folder and returns this; it changes nothing else (not the
build, not the manifest), so every backend hands the compiler the same shape of result."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Lowered:
    info: dict  # the manifest's backend_info: what was built, with what, and how it was checked
    files: tuple[str, ...] = ()  # the artifact-relative files lower wrote
    sections: dict = field(default_factory=dict)  # further top-level manifest sections (C: memory_plan, footprint, cost)

    def manifest_entries(self) -> dict:
        """backend_info, then the backend's own sections, in the order the manifest records them."""
        return {"backend_info": self.info, **self.sections}
