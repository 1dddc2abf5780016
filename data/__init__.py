"""Dataset side of the toolkit: annotation sheet, class protocols, frame layout, samples."""
from data.action_units import ActionUnit, parse_action_units
from data.errors import DataError
from data.layout import LAYOUTS, detect_layout, frame_path, resolve_layout
from data.protocols import PROTOCOLS, Protocol, apply_protocol, get_protocol
from data.release import Release, Sample, au_multi_hot, aus_outside, load_release
from data.sheet import SheetRow, find_sheet, read_sheet

__all__ = [
    "ActionUnit", "parse_action_units",
    "DataError", "LAYOUTS", "detect_layout", "frame_path", "resolve_layout",
    "PROTOCOLS", "Protocol", "apply_protocol", "get_protocol",
    "Release", "Sample", "au_multi_hot", "aus_outside", "load_release",
    "SheetRow", "find_sheet", "read_sheet",
]
