"""The HTML report builds from a synthetic results table and holds every figure and table."""

import base64
import re

import numpy as np

from study.export import export_results
from study.folder import write_json_atomic


def _study(tmp_path, n=24):
    rng = np.random.default_rng(0)
    for i in range(n):
        variant = ["beta_vae", "beta_tcvae"][i % 2]
        beta = float(rng.uniform(1, 10))
        schedule = {"beta.schedule": "constant", "beta.value": beta}
        if i % 4 == 0:  # another family: its parameters are missing (NaN) for the others
            schedule = {"beta.schedule": "linear", "beta.end": beta, "beta.end_step": 50}
        record = {
            "trial_id": f"t{i:03d}", "status": "completed" if i != 5 else "failed", "variant": variant,
            "seed": i % 3, "steps": 100, "params": schedule,
            "terms": {"recon": 100 + 10 * beta + rng.normal(), "kl": 20 / beta} if i != 5 else {},
            "metrics": {"mig": 0.02 * beta + 0.05 * rng.random()} if i != 5 else {},
        }  # fmt: skip
        folder = tmp_path / "trials" / record["trial_id"]
        folder.mkdir(parents=True)
        write_json_atomic(folder / "result.json", record)
    export_results(tmp_path, [{"name": "recon", "mode": "min"}, {"name": "mig", "mode": "max"}])
    return tmp_path


def test_report_contains_every_figure_and_table(cli, tmp_path):
    study_dir = _study(tmp_path)
    result = cli.call("report", study_dir)
    assert result.returncode == 0, result.stderr
    page = (study_dir / "report.html").read_text()
    for figure in ("pareto", "recon_vs_parameters", "mig_vs_parameters", "recon_seed_spread", "mig_seed_spread",
                   "rank_correlation"):  # fmt: skip
        assert f'<figure id="{figure}">' in page, figure
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 6 and all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    for heading in ("Trials", "Distributions per variant", "Variance explained", "Non-dominated trials"):
        assert f"<h2>{heading}" in page
    assert "beta_tcvae" in page and "failed" in page


def test_report_needs_results(cli, tmp_path):
    result = cli.call("report", tmp_path)
    assert result.returncode == 2 and "no results.parquet" in result.stderr


def test_report_ranks_configurations_by_udr(cli, tmp_path):
    rng = np.random.default_rng(1)
    factors = rng.uniform(-1, 1, (300, 3))
    for i in range(6):
        beta = [1.0, 8.0][i % 2]
        folder = tmp_path / "trials" / f"t{i:03d}"
        folder.mkdir(parents=True)
        # beta 8 seeds find the factors again (permuted); beta 1 seeds are random rotations of them.
        if beta == 8.0:
            codes = factors[:, rng.permutation(3)]
        else:
            codes = factors @ np.linalg.qr(rng.normal(size=(3, 3)))[0]
        np.savez(folder / "codes.npz", mean=codes + 0.01 * rng.normal(size=codes.shape), kl=np.ones(3))
        write_json_atomic(
            folder / "result.json",
            {
                "trial_id": f"t{i:03d}", "status": "completed", "variant": "beta_vae", "seed": i // 2, "steps": 10,
                "params": {"beta.schedule": "constant", "beta.value": beta},
                "terms": {"recon": 100.0 - beta}, "metrics": {"mig": 0.01 * beta},
                "artifacts": {"codes": str(folder / "codes.npz")},
            },
        )  # fmt: skip
    export_results(tmp_path, [{"name": "recon", "mode": "min"}, {"name": "mig", "mode": "max"}])
    result = cli.call("report", tmp_path)
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "report.html").read_text()
    table = page[page.index("<h2>UDR") :]
    assert table.index("8.0") < table.index("1.0")  # the disentangling configuration ranks first
