"""A seccomp filter for a process that must have no network and no way around its confinement (stdlib only).

Installed with no_new_privs in the child between fork and exec (jobs/sandbox/confine.py), it is inherited by
everything the child runs. It is the network boundary where a new network namespace cannot be made (Fargate
has no user namespaces): `socket()` fails for every family, so a render cannot reach the task's credentials
endpoint, the worker, or the internet. The other calls refused are the usual escape and snooping tools
(ptrace, other processes' memory, keyrings, BPF, perf, io_uring, mounts and namespaces, modules, kexec).
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

# seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]
_NR, _ARCH = 0, 4
_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_RET = 0x06  # BPF_RET | BPF_K
_ALLOW = 0x7FFF0000
_KILL_PROCESS = 0x80000000
_ERRNO = 0x00050000
_X32_BIT = 0x40000000

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2

# The refused calls and their numbers on x86_64 and aarch64 (socket first: it is the one that matters most).
REFUSED = {
    "socket": (41, 198),
    "ptrace": (101, 117),
    "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271),
    "keyctl": (250, 219),
    "add_key": (248, 217),
    "request_key": (249, 218),
    "bpf": (321, 280),
    "perf_event_open": (298, 241),
    "userfaultfd": (323, 282),
    "io_uring_setup": (425, 425),
    "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427),
    "mount": (165, 40),
    "umount2": (166, 39),
    "pivot_root": (155, 41),
    "chroot": (161, 51),
    "unshare": (272, 97),
    "setns": (308, 268),
    "kexec_load": (246, 104),
    "init_module": (175, 105),
    "finit_module": (313, 273),
    "delete_module": (176, 106),
    "name_to_handle_at": (303, 264),
    "open_by_handle_at": (304, 265),
    "acct": (163, 89),
    "swapon": (167, 224),
    "reboot": (169, 142),
}
ARCHES = {  # the architecture's audit value, and its column in REFUSED
    "x86_64": (0xC000003E, tuple(numbers[0] for numbers in REFUSED.values())),
    "aarch64": (0xC00000B7, tuple(numbers[1] for numbers in REFUSED.values())),
}


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def program(machine: str | None = None) -> bytes:
    """The BPF program for this machine: other architectures (32-bit compat, x32) are killed outright."""
    machine = machine or platform.machine()
    if machine not in ARCHES:
        raise OSError(f"no seccomp filter for the {machine} architecture")
    audit, numbers = ARCHES[machine]
    denied = _ERRNO | errno.EPERM
    body = [_insn(_LD_W_ABS, 0, 0, _ARCH), _insn(_JEQ, 1, 0, audit), _insn(_RET, 0, 0, _KILL_PROCESS)]
    body.append(_insn(_LD_W_ABS, 0, 0, _NR))
    if machine == "x86_64":  # the x32 ABI shares the architecture value: its numbers carry this bit
        body.append(_insn(_JGE, len(numbers) + 1, 0, _X32_BIT))
    for i, number in enumerate(numbers):
        # on a match jump to the final "refuse"; else fall through to the next comparison
        body.append(_insn(_JEQ, len(numbers) - i, 0, number))
    body.append(_insn(_RET, 0, 0, _ALLOW))
    body.append(_insn(_RET, 0, 0, denied))
    return b"".join(body)


class _Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_libc = ctypes.CDLL(None, use_errno=True)


def install_program(code: bytes) -> None:
    """Set no_new_privs and load `code` (from `program()`) into the calling thread and what it execs."""
    buffer = ctypes.create_string_buffer(code, len(code))
    prog = _Fprog(len(code) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if _libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")
