"""``check``: the output verdict writes for real; a missing resctrl is explained."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner

from resctrl_pipeline.cli import main
from resctrl_pipeline.resctrl.support import Platform, diagnose, read_platform

GOOD = frozenset({"fpu", "cqm_llc", "cqm_occup_llc", "cqm_mbm_total", "rdt_a"})


def platform(flags: frozenset[str] = GOOD, kernel: bool = True, cmdline: str = "",
             vendor: str = "", x86: bool = True) -> Platform:  # fmt: skip
    return Platform(flags, x86, kernel, cmdline, vendor)


def test_a_mount_is_suggested_only_when_cpu_and_kernel_support_resctrl() -> None:
    status, text = diagnose(platform(), "/sys/fs/resctrl")
    assert status == "OK" and text.endswith("mount -t resctrl resctrl /sys/fs/resctrl")


def test_missing_cpu_flags_on_a_vm_point_at_the_instance_type() -> None:
    status, text = diagnose(platform(frozenset({"fpu", "hypervisor"}), vendor="Amazon EC2"), "/r")
    assert status == "FAIL"
    assert "cqm_llc and cqm_occup_llc" in text and "*.metal" in text and "mount" not in text


def test_missing_cpu_flags_on_bare_metal_point_at_the_bios() -> None:
    status, text = diagnose(platform(frozenset({"fpu", "cqm_llc"})), "/r")
    assert status == "FAIL" and "cqm_occup_llc" in text and "BIOS" in text


def test_kernel_without_resctrl_or_with_monitoring_switched_off() -> None:
    status, text = diagnose(platform(kernel=False), "/r")
    assert status == "FAIL" and "CONFIG_X86_CPU_RESCTRL" in text
    status, text = diagnose(platform(cmdline="quiet rdt=!cmt,mba"), "/r")
    assert status == "FAIL" and "rdt=!cmt" in text and "boot parameters" in text


def test_platform_facts_are_read_from_proc(tmp_path: Path) -> None:
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nflags\t\t: fpu cqm_llc hypervisor\n"
                                      "processor\t: 1\nflags\t\t: fpu\n")  # fmt: skip
    (tmp_path / "filesystems").write_text("nodev\tsysfs\nnodev\tresctrl\n\text4\n")
    (tmp_path / "cmdline").write_text("ro quiet\n")
    p = read_platform(str(tmp_path), str(tmp_path / "no-dmi"))
    assert p == Platform(frozenset({"fpu", "cqm_llc", "hypervisor"}), True, True, "ro quiet", "")


def check_output(out: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["check", "--output", out])
    lines = [line for line in result.output.splitlines() if line.split()[1:2] == ["output"]]
    assert len(lines) == 1, result.output
    return result.exit_code, lines[0]


def test_output_under_a_file_fails_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "passwd").write_text("x")
    code, line = check_output(str(tmp_path / "passwd" / "data"))
    assert code == 1
    assert line.split(None, 2)[0] == "FAIL"
    assert line.endswith(f"{tmp_path / 'passwd'} is not a directory")


def test_output_is_written_for_real_and_nothing_is_left_behind(tmp_path: Path) -> None:
    _, line = check_output(str(tmp_path / "new" / "data"))
    assert line.split(None, 2)[0] == "OK" and "created and removed a file" in line
    assert os.listdir(tmp_path) == []  # the directories it created are gone too
    (tmp_path / "data").mkdir()
    _, line = check_output(str(tmp_path / "data"))
    assert line.split(None, 2)[0] == "OK" and os.listdir(tmp_path / "data") == []
