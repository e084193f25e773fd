"""Typed configuration: defaults documented, YAML overrides validated, errors are exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.config import ConfigError, describe, load_config
from tests.conftest import REPO


def test_every_parameter_is_documented() -> None:
    undocumented = [name for name, _v, doc in describe() if not doc.strip()]
    assert not undocumented


def test_yaml_overrides_and_env_warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("engine: {memory_limit: 1GB}\nparams: {persistence_window_days: 60}\n")
    monkeypatch.setenv("TXH_WAREHOUSE", str(tmp_path / "w"))
    cfg = load_config(p)
    assert cfg.engine.memory_limit == "1GB" and cfg.params.persistence_window_days == 60
    assert cfg.warehouse_path == tmp_path / "w"
    assert load_config(p, warehouse="/x").warehouse == "/x"  # CLI option beats the environment


@pytest.mark.parametrize(
    "text,msg",
    [
        ("engine: {memroy_limit: 1GB}\n", "unknown setting"),
        ("params: {persistence_window_days: thirty}\n", "expected an integer"),
        ("quality: {on_gate_failure: ignore}\n", "not one of"),
        ("ingest: {log_part_rows: 0}\n", "below the minimum 1"),
        # the sliding windows' slot numbers assume a positive step (adherence_cma_windows)
        ("params: {cma_sliding_window_step_days: -30}\n", "below the minimum 1"),
        ("quality: [1, 2]\n", "expected a mapping"),
        ("a: [\n", "not valid YAML"),
    ],
)
def test_bad_configuration_is_a_clear_error(tmp_path: Path, text: str, msg: str) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=msg):
        load_config(p)


def test_cli_exits_2_on_bad_configuration(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("engine: {nope: 1}\n")
    r = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "-c", str(p), "config"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "unknown setting" in r.stderr


def test_memory_limit_auto_is_half_the_ram_and_explicit_values_apply(tmp_path: Path) -> None:
    import psutil

    from pipelines.warehouse import connect, resolve_memory_limit

    half_mb = psutil.virtual_memory().total // 2 // 2**20
    assert resolve_memory_limit("auto") == f"{max(2048, half_mb)}MiB"
    assert resolve_memory_limit("3GB") == "3GB"
    cfg = load_config(warehouse=str(tmp_path / "w"))
    assert cfg.engine.memory_limit == "auto"
    con = connect(cfg)
    try:
        applied = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    finally:
        con.close()
    # DuckDB reports the limit in its own units (GiB / MiB, rounded): compare in MiB
    value, unit = applied.split()
    mib = float(value) * {"GiB": 1024, "MiB": 1, "TiB": 1024 * 1024}[unit]
    assert abs(mib - max(2048, half_mb)) <= 103  # DuckDB shows GiB to one decimal
    con = connect(cfg, memory_limit="1GB")
    try:
        one = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    finally:
        con.close()
    assert one != applied


def test_block_allocator_follows_the_connections_memory_limit_and_can_be_off(
    tmp_path: Path,
) -> None:
    from pipelines.warehouse import connect

    def settings(cfg, **kw) -> tuple[str, str]:
        con = connect(cfg, **kw)
        try:
            return con.execute(
                "SELECT current_setting('memory_limit'), current_setting('block_allocator_memory')"
            ).fetchone()
        finally:
            con.close()

    cfg = load_config(warehouse=str(tmp_path / "w"))
    assert cfg.engine.block_allocator_memory == "auto"
    limit, block = settings(cfg, memory_limit="1GB")
    assert block != "0 bytes" and block.split()[1] in ("MiB", "GiB")
    # the same amount as the memory limit (DuckDB shows both rounded in its own units)
    assert abs(float(block.split()[0]) - float(limit.split()[0])) < 0.1 * float(limit.split()[0])
    off = load_config(warehouse=str(tmp_path / "w"), engine={"block_allocator_memory": "off"})
    assert settings(off)[1] == "0 bytes"
    fixed = load_config(warehouse=str(tmp_path / "w"), engine={"block_allocator_memory": "512MB"})
    assert settings(fixed)[1].startswith("488")  # 512 MB shown in MiB


def test_block_allocator_never_breaks_a_valid_memory_limit(tmp_path: Path) -> None:
    """DuckDB caps its block allocator at about 80 % of the memory it sees: with a memory limit
    of 90 % of RAM, `auto` is skipped and the connection works; an explicit value DuckDB
    refuses is a configuration error naming the setting; `off` unquoted in YAML (false) works."""
    from pipelines.warehouse import connect

    cfg = load_config(warehouse=str(tmp_path / "w"), engine={"memory_limit": "90%"})
    con = connect(cfg)
    try:
        assert con.execute("SELECT 1").fetchone() == (1,)
        block = con.execute("SELECT current_setting('block_allocator_memory')").fetchone()[0]
    finally:
        con.close()
    assert block == "0 bytes"
    # a percentage limit: `auto` takes the limit DuckDB resolved, not a share of it
    cfg = load_config(warehouse=str(tmp_path / "w"), engine={"memory_limit": "20%"})
    con = connect(cfg)
    try:
        limit, block = con.execute(
            "SELECT current_setting('memory_limit'), current_setting('block_allocator_memory')"
        ).fetchone()
    finally:
        con.close()
    gib = {"GiB": 1.0, "MiB": 1 / 1024}
    as_gib = [float(v.split()[0]) * gib[v.split()[1]] for v in (limit, block)]
    assert abs(as_gib[0] - as_gib[1]) <= 0.03 * as_gib[0]  # shown rounded to 0.1 GiB
    huge = load_config(warehouse=str(tmp_path / "w"), engine={"block_allocator_memory": "100TB"})
    with pytest.raises(ConfigError, match="engine.block_allocator_memory"):
        connect(huge)
    p = tmp_path / "c.yaml"
    p.write_text("engine: {block_allocator_memory: off}\n")
    assert load_config(p).engine.block_allocator_memory == "off"
