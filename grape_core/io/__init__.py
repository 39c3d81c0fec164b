"""Every file the project writes goes through here.

A file is written to a temporary file in the same folder and renamed into place, so an
interrupted run leaves the previous good file (:func:`atomic_path` and the ``write_*``
helpers, :mod:`.files`); a whole folder (a model, gene knowledge, a planted screen) the same
way, with the SHA-256 of every file in its manifest (:func:`write_folder`, :mod:`.store`).
Before the work, :func:`check_output` and :func:`check_output_folder` refuse, with one line,
a target that is a link, a device, an input of the command or a folder of the user's
(:mod:`.outputs`); a full disk is one line naming the file and the space needed
(:func:`disk_full`, :mod:`.space`). Also: strict JSON, the lock that reserves an output
(:func:`reserve`) and the reading of a file the user gives (:func:`read_text_file`).
"""

from .files import (MAX_TEXT_BYTES, atomic_path, check_input_file, read_safetensors_numpy,
                    read_text_file, refuse_special, sha256_file, strict, tensor_bytes, to_json,
                    write_bytes, write_json, write_safetensors, write_table, write_text)
from .outputs import (FolderKind, Named, check_output, check_output_folder, check_writable,
                      is_empty_folder, json_marker, lock_path, not_ours, reserve,
                      same_or_inside)
from .space import (disk_full, disk_full_message, ensure_space, file_mode, folder_mode,
                    free_space, glob_escape, human_size, is_disk_full, remove_stale, temp_prefix,
                    umask)
from .store import file_problem, files_of, install, write_folder

__all__ = [
    "MAX_TEXT_BYTES", "atomic_path", "check_input_file", "read_safetensors_numpy",
    "read_text_file", "refuse_special", "sha256_file", "strict", "tensor_bytes", "to_json",
    "write_bytes", "write_json", "write_safetensors", "write_table", "write_text",
    "FolderKind", "Named", "check_output", "check_output_folder", "check_writable",
    "is_empty_folder", "json_marker", "lock_path", "not_ours", "reserve", "same_or_inside",
    "disk_full", "disk_full_message", "ensure_space", "file_mode", "folder_mode", "free_space",
    "glob_escape", "human_size", "is_disk_full", "remove_stale", "temp_prefix", "umask",
    "file_problem", "files_of", "install", "write_folder",
]
