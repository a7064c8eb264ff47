"""Why resctrl monitoring is missing on a machine, and the remedy that fits.

When nothing is mounted at the resctrl root, ``mount -t resctrl`` is only the answer
if the kernel knows the filesystem and the CPU offers cache monitoring. The facts:

* ``/proc/filesystems`` lists ``resctrl`` when the kernel was built with it
  (``CONFIG_X86_CPU_RESCTRL``; ``CONFIG_ARM64_MPAM`` on arm64);
* ``/proc/cpuinfo`` flags: ``cqm_llc`` (the CPU has cache QoS monitoring) and
  ``cqm_occup_llc`` (it can count L3 occupancy); ``cqm_mbm_total``/``cqm_mbm_local``
  (memory bandwidth); ``rdt_a``/``cat_l3`` (allocation, not needed here). Both Intel
  RDT and AMD PQoS report these flags; ``hypervisor`` marks a virtual machine;
* ``/proc/cmdline``: ``rdt=!cmt`` (or ``!llc``) switches occupancy monitoring off.

:func:`diagnose` turns them into one verdict: the most specific cause first.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Platform", "diagnose", "read_platform"]


@dataclass(frozen=True, slots=True)
class Platform:
    """What the machine says about resctrl support (from :func:`read_platform`)."""

    cpu_flags: frozenset[str]
    arch_x86: bool
    kernel_resctrl: bool
    cmdline: str
    vendor: str  # /sys/class/dmi/id/sys_vendor, "" when unknown


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def read_platform(proc: str = "/proc", dmi: str = "/sys/class/dmi/id") -> Platform:
    """Read the facts (missing files read as empty)."""
    flags: frozenset[str] = frozenset()
    x86 = False
    for line in _read(f"{proc}/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags, x86 = frozenset(value.split()), True
            break
        if key.strip() == "Features":  # arm64
            flags = frozenset(value.split())
            break
    filesystems = {line.split()[-1] for line in _read(f"{proc}/filesystems").splitlines()
                   if line.strip()}  # fmt: skip
    return Platform(flags, x86, "resctrl" in filesystems, _read(f"{proc}/cmdline").strip(),
                    _read(f"{dmi}/sys_vendor").strip())  # fmt: skip


_CLOUDS = {
    "Amazon EC2": "on AWS, a bare-metal (*.metal) instance type passes RDT through",
    "Google": "on Google Cloud, VMs do not expose cache monitoring: use a sole-tenant or "
    "bare-metal node",
    "Microsoft Corporation": "on Azure, VMs do not expose cache monitoring: use a bare-metal "
    "(dedicated host) node",
}


def diagnose(p: Platform, root: str) -> tuple[str, str]:
    """(status, sentence) for a machine with nothing mounted at ``root``.

    ``OK`` when a mount is all that is missing (the sentence gives the command), else
    ``FAIL`` with the cause and its remedy: a kernel option, the BIOS, or another
    instance type.
    """
    if not p.arch_x86 and not p.cpu_flags:
        return "FAIL", "cannot read the CPU flags in /proc/cpuinfo; resctrl needs Linux on x86 " \
            "(Intel RDT, AMD PQoS) or arm64 with MPAM"
    if not p.arch_x86 and not p.kernel_resctrl:
        return "FAIL", "not an x86 CPU and the kernel has no resctrl: on arm64 it needs MPAM " \
            "hardware and a kernel with CONFIG_ARM64_MPAM"
    if p.arch_x86 and not {"cqm_llc", "cqm_occup_llc"} <= p.cpu_flags:
        missing = sorted({"cqm_llc", "cqm_occup_llc"} - p.cpu_flags)
        facts = f"the CPU does not report {' and '.join(missing)} in /proc/cpuinfo"
        if "hypervisor" in p.cpu_flags:
            cloud = _CLOUDS.get(p.vendor, "ask for an instance type or hypervisor setting "
                                          "that passes Intel RDT / AMD PQoS monitoring through")
            return "FAIL", f"{facts}: this virtual machine hides L3 cache monitoring; {cloud}"
        return "FAIL", (f"{facts}: the CPU has no L3 cache monitoring, or it is switched off "
                        "in the firmware: enable Intel RDT (or AMD PQoS) in the BIOS/UEFI setup")
    if any(w.startswith("rdt=") and ("!cmt" in w or "!llc" in w) for w in p.cmdline.split()):
        return "FAIL", "the kernel command line switches occupancy monitoring off (rdt=!cmt " \
            "in /proc/cmdline): remove it from the boot parameters and reboot"
    if not p.kernel_resctrl:
        return "FAIL", ("the CPU can monitor the L3 but the kernel has no resctrl "
                        "(not in /proc/filesystems): use a kernel built with "
                        "CONFIG_X86_CPU_RESCTRL=y (most distribution kernels since 4.14)")
    return "OK", f"the CPU and the kernel support it; mount it: mount -t resctrl resctrl {root}"
