"""A tiny study's report.html as a reader opens it, in headless Chromium: it loads, every picture
decodes, the front trials' traversals are there, and the page stays small.  The same study's
parquet has the version-2 columns."""

import os
import shutil

import pytest
from scaffold import Cli, tiny_spec

from analysis import load_results

pytestmark = pytest.mark.integration

MAX_PAGE_BYTES = 20_000_000


@pytest.fixture(scope="module")
def reported_study(tmp_path_factory):
    """One finished tiny Optuna study (three trials), shared by this module's tests."""
    spec = tiny_spec(name="reported", evaluation={"metrics": ["mig", "active_units"]})
    proc, study_dir = Cli(tmp_path_factory.mktemp("reported")).study(spec)
    return proc, study_dir


def _chromium() -> str:
    """Debian's chromium for Playwright (no browser download); skip, or fail when
    VAE_STUDY_REQUIRE_BROWSER=1, without it (as tests/test_mlflow_server.py)."""
    required = os.environ.get("VAE_STUDY_REQUIRE_BROWSER") == "1"
    path = os.environ.get("VAE_STUDY_CHROMIUM") or shutil.which("chromium")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        path = None
    if path is None:
        message = "needs Debian's chromium (apt-get install chromium) and playwright (pip install '.[dev]')"
        if required:
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_the_parquet_has_typed_columns_on_front_and_optuna_numbers(reported_study):
    _, study_dir = reported_study
    df = load_results(study_dir)
    assert df.attrs["schema_version"] == 2 and len(df) == 3
    assert str(df["optuna_number"].dtype) == "Int64" and sorted(df["optuna_number"]) == [0, 1, 2]
    assert df["on_front"].dtype == bool and df["on_front"].any()
    assert str(df["started_at"].dtype) == "datetime64[us, UTC]" and df["started_at"].is_monotonic_increasing
    assert str(df["seed"].dtype) == "Int64" and (df["duration_s"] > 0).all()
    assert df["udr"].dtype == "float64" and str(df["failed_step"].dtype) == "Int64"


def test_the_report_shows_the_front_trials_pictures_in_a_browser(reported_study, tmp_path):
    from playwright.sync_api import sync_playwright

    _, study_dir = reported_study
    page_file = study_dir / "report.html"
    assert page_file.stat().st_size <= MAX_PAGE_BYTES
    text = page_file.read_text()
    front = load_results(study_dir).query("on_front")
    for trial_id in front["trial_id"]:
        assert f'<figure id="pictures-{trial_id}">' in text, trial_id  # traversals of every front trial
    assert "training-curves" in text and "no pictures saved" not in text

    chromium = _chromium()
    flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-background-networking", "--no-first-run"]  # fmt: skip
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=flags)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            errors = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(page_file.resolve().as_uri(), wait_until="load")
            images = page.evaluate(
                "() => Array.from(document.images, i => ({alt: i.alt, complete: i.complete, w: i.naturalWidth}))"
            )
            assert len(images) >= 2 + len(front), images  # Pareto plot, curves, one per front trial, ...
            broken = [i["alt"] for i in images if not i["complete"] or i["w"] == 0]
            assert not broken, broken
            assert page.title() == f"Study report: {study_dir.name}"
            headings = page.locator("h2").all_inner_texts()
            assert "Front trials: reconstructions and traversals" in headings and "Pareto front" in headings
            size = page.evaluate("() => document.documentElement.outerHTML.length")
            assert 0 < size <= MAX_PAGE_BYTES
            page.locator(f"#pictures-{front['trial_id'].iloc[0]}").screenshot(path=str(tmp_path / "traversal.png"))
            assert not errors, errors
        finally:
            browser.close()
    assert (tmp_path / "traversal.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
