"""Files: the layout of a history, its writer and its one verified reader, integrity digests, checkpoints, and
ownership of every output file.  io stores and returns arrays and configs: it rebuilds no physics.

    layout      the datasets of a history (docs/output.md), their units and names
    writer      HistoryWriter: a file built complete, then rows filled in (crash-safe appends)
    reader      read_history: the file probed, checked against the layout and its digests -> a History
    history     History (one shape, in a file or in memory), MemoryWriter, the xarray view
    integrity   digests of what was written, the checks of a history's contents
    checkpoint  the solver state next to the history (OUT.h5.ckpt) and in it (/resume)
    repack      structural changes made on a copy that replaces the file
    ownership   outputs never clobbered, shared, half-written or written through a link
    report      meanfield info's provenance and checks (``check``)
    dataset     meanfield.open_history; shtools: pyshtools interop
"""

from .checkpoint import StoredState, checkpoint_path, read_checkpoint, read_final_state, write_checkpoint
from .dataset import open_history
from .history import (History, MemoryWriter, cluster_mergers, density_snapshots, geometry_of, grid_density,
                      snapshot_before)
from .integrity import CHECKSUMS, NON_FINITE, TIMES_NOT_INCREASING, config_hash, history_problems, reseal, row_digest
from .layout import DIAGNOSTICS, LAYOUT_VERSION, text
from .reader import read_attrs, read_history, read_snapshot, snapshot_count
from .report import Check, Report, check
from .writer import HistoryWriter, add_attributes, check_room, reopen_history

__all__ = ["CHECKSUMS", "Check", "DIAGNOSTICS", "History", "HistoryWriter", "LAYOUT_VERSION", "MemoryWriter",
           "NON_FINITE", "Report", "StoredState", "TIMES_NOT_INCREASING", "check", "check_room", "checkpoint_path",
           "cluster_mergers", "config_hash", "density_snapshots", "geometry_of", "grid_density", "history_problems",
           "open_history", "read_attrs", "read_checkpoint", "read_final_state", "read_history", "read_snapshot",
           "add_attributes", "reopen_history", "reseal", "row_digest", "snapshot_before", "snapshot_count", "text", "write_checkpoint"]
