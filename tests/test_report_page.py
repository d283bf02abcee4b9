"""The report page: the answer first, the headline table, glossary, escaping, metadata, single file, layout.

Inputs come from ``synthetic_study`` (test_report_figures.py): tables and results in the pipeline's contract,
and in the format of older runs (no headline, flat meta) for the fallbacks.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from markupsafe import escape
from test_report_figures import MEMBERS, synthetic_study

from serobust.errors import SerobustError
from serobust.report import SINGLE_FILE_NAME, ReportFolderError, render_single_file, write_report
from serobust.report.glossary import TERMS, place_terms
from serobust.report.headline import attacked_images
from serobust.report.palette import member_palette
from serobust.report.tables import TABLES


class _Page(HTMLParser):
    """Tags of interest in document order: (tag, attrs) and the text before the first table."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text_before_table: list[str] = []
        self._in_table = False
        self._seen_table = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self._seen_table = True

    def handle_data(self, data):
        if not self._seen_table and data.strip():
            self.text_before_table.append(data.strip())


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    results, tables, examples = synthetic_study()
    out = tmp_path_factory.mktemp("report")
    page = write_report(out, results, tables, examples, single_file=True)
    return out, page.read_text(), results


@pytest.fixture(scope="module")
def old_report(tmp_path_factory):
    results, tables, _ = synthetic_study(new_format=False)
    out = tmp_path_factory.mktemp("old")
    return out, write_report(out, results, tables).read_text(), results


def test_the_page_leads_with_the_verdicts_headline_sentence_before_any_table(report):
    _, html, results = report
    before = " ".join(_parse(html).text_before_table)
    for twin, v in results["verdict"].items():
        assert v["headline"] in before, twin
    assert 'class="badge opposite"' in html  # se_r16 is worse on purpose
    assert "Verdict" in html


def test_the_headline_table_has_one_row_per_member_with_params_and_the_paired_interval(report):
    _, html, _ = report
    table = html[html.index('class="tbl headline-table"'):]
    table = table[: table.index("</table>")]
    rows = re.findall(r"<tr>(.*?)</tr>", table, re.S)
    assert len(rows) == 1 + len(MEMBERS)
    assert "eps 4/255" in rows[0] and "eps 8/255" in rows[0] and "params" in rows[0]
    assert "52,800" in rows[2] and "reference" in rows[1]
    assert re.search(r"\u2212\d+\.\d pp \[\u2212\d+\.\d, [+\u2212]\d+\.\d\]", rows[3]), rows[3]
    # the caption says on how many images the main attack ran (robust rows of the synthetic study: 200)
    caption = html[html.index('<section id="headline">'):html.index('class="tbl headline-table"')]
    assert "on the\n200 test images per seed it attacked" in caption


def test_the_headline_names_the_attacked_images_and_their_range():
    robust = pd.DataFrame({"attack": ["autoattack", "autoattack", "pgd"], "n": [30, 40, 200]})
    assert attacked_images({"robust": robust}, "autoattack") == "30-40"
    assert attacked_images({"robust": robust}, "pgd") == "200"
    assert attacked_images({"robust": robust}, "fgsm") == ""
    assert attacked_images({}, "pgd") == ""


def test_every_glossary_term_is_defined_once_where_first_used(report):
    _, html, _ = report
    for key in ("u", "z", "s", "rel_change", "damping", "z_over_u", "mcnemar", "informative", "opposite", "pp"):
        assert html.count(f'id="term-{key}"') == 1, key
        assert str(escape(TERMS[key].text)) in html
    # damping ratio is first used by the criteria table, before the figures
    assert html.index('id="term-damping"') < html.index('id="fig-robust_accuracy"')
    # McNemar's counts are defined next to the McNemar table
    assert html.index('id="table-mcnemar"') < html.index('id="term-mcnemar"') < html.index("<th>b01</th>")


def test_place_terms_gives_each_term_to_its_first_user_and_rejects_unknown_keys():
    placed = place_terms([("a", ["u", "z"]), ("b", ["z", "s"])])
    assert [t.key for t in placed["a"]] == ["u", "z"] and [t.key for t in placed["b"]] == ["s"]
    with pytest.raises(KeyError, match="no glossary term"):
        place_terms([("a", ["no_such_term"])])


@pytest.mark.parametrize("spec", TABLES, ids=lambda s: s.name)
def test_every_reference_table_names_only_terms_the_glossary_defines(spec):
    assert set(spec.terms) <= set(TERMS), spec.name
    assert spec.title and spec.about


def test_figures_are_numbered_with_alt_text_and_relative_sources(report):
    out, html, _ = report
    imgs = [a for tag, a in _parse(html).tags if tag == "img"]
    assert len(imgs) == len(list((out / "figures").glob("*.png"))) == 10  # noise_relative among them
    for i, img in enumerate(imgs, start=1):
        assert img["alt"].startswith(f"Figure {i}.") and len(img["alt"]) > 40
        assert img["src"].startswith("figures/") and (out / img["src"]).is_file()
        assert f"<b>Figure {i}.</b>" in html
    assert '<meta name="viewport"' in html and 'class="toc"' in html


def test_long_tables_fold_and_every_table_scrolls_in_its_own_box(report):
    _, html, _ = report
    assert "<details><summary>Show" in html
    starts = [m.start() for m in re.finditer(r"<table", html)]
    assert len(starts) > 10
    for start in starts:
        box = html.rfind('<div class="scroll">', 0, start)
        assert box >= 0 and "</div>" not in html[box:start], html[start - 200 : start + 80]


def test_metadata_shows_commit_dirty_flag_versions_params_attacks_and_one_run_time(report):
    _, html, _ = report
    assert "abc123 (uncommitted changes (dirty))" in html
    assert "python 3.11, torch 2.14" in html and "cpu: x86_64, 2 threads" in html
    assert "se_r4: 52,800" in html and "10 steps, alpha=2.5*eps/steps, 1 restart(s)" in html
    assert "seeds 0 on 100 images" in html
    assert html.count("123.4 s") == 1  # the one run time, exactly as results.json holds it


def test_text_from_configs_and_results_is_escaped(tmp_path):
    results, tables, _ = synthetic_study()
    results["meta"]["description"] = "<script>alert('x')</script> & <b>bold</b>"
    results["verdict"]["se_r4"]["headline"] = "<img src=x onerror=alert(1)>"
    tables["diagnostics"].loc[0, "detail"] = "<i>detail</i>"
    html = write_report(tmp_path, results, tables).read_text()
    assert "<script>alert" not in html and "<img src=x" not in html and "<i>detail</i>" not in html
    assert "&lt;script&gt;alert(" in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_single_file_inlines_every_figure_and_links_no_external_image(report):
    out, html, _ = report
    single = (out / SINGLE_FILE_NAME).read_text()
    srcs = [a["src"] for tag, a in _parse(single).tags if tag == "img"]
    assert len(srcs) == html.count("<img ")
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert 'src="figures/' not in single


def test_render_single_file_rebuilds_it_from_a_finished_folder(report, tmp_path):
    out, html, results = report
    folder = tmp_path / "copy"
    shutil.copytree(out, folder)
    (folder / SINGLE_FILE_NAME).unlink()
    (folder / "results.json").write_text(json.dumps(results, default=str))
    for name, frame in synthetic_study()[1].items():
        (folder / "tables").mkdir(exist_ok=True)
        frame.to_csv(folder / "tables" / f"{name}.csv", index=False)
    path = render_single_file(folder)
    assert path == folder / SINGLE_FILE_NAME
    single = path.read_text()
    assert single.count('src="data:image/png;base64,') == html.count("<img ") and 'src="figures/' not in single
    elsewhere = render_single_file(folder, path=tmp_path / "mail.html")
    assert elsewhere.read_text().count("data:image/png;base64,") == html.count("<img ")


def test_render_single_file_on_a_folder_without_results_says_what_to_do(tmp_path):
    with pytest.raises(ReportFolderError, match="results.json is missing") as err:
        render_single_file(tmp_path)
    assert isinstance(err.value, SerobustError) and isinstance(err.value, FileNotFoundError)


def test_results_of_older_runs_still_lead_with_a_sentence_and_a_headline_table(old_report):
    _, html, results = old_report
    before = " ".join(_parse(html).text_before_table)
    assert re.search(r"se_r16 is \d+\.\d percentage points less robust than baseline under PGD-10", before)
    assert "eps 8/255" not in html.split('id="criteria"')[0]  # no eps labels recorded: %g
    assert 'class="tbl headline-table"' in html and "cpu (2 threads)" in html


def test_a_study_with_only_the_attack_stage_still_gets_a_page(tmp_path):
    results, tables, _ = synthetic_study()
    kept = {k: v for k, v in tables.items() if k in ("robust", "robust_stats")}
    html = write_report(tmp_path, results, kept).read_text()
    assert sorted(p.name for p in (tmp_path / "figures").glob("*.png")) == ["paired_differences.png",
                                                                            "robust_accuracy.png"]
    assert html.count("<img ") == 2


def test_one_palette_colours_the_page_and_the_figures(report):
    _, html, _ = report
    for member, color in member_palette(MEMBERS).items():
        assert f'<span class="swatch" style="background: {color}"></span>{member}' in html


# ------------------------------------------------------------------------------------------------ browser

_CHROMIUM = Path("/usr/bin/chromium")

_PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const out = {
    scroll: document.documentElement.scrollWidth, width: window.innerWidth,
    images: imgs.length, broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length,
    no_alt: imgs.filter(i => !(i.alt || '').trim()).length,
    headline_rows: document.querySelectorAll('table.headline-table tbody tr').length,
    headline_text: [...document.querySelectorAll('.answer .headline')].map(p => p.textContent),
  };
  parent.postMessage(JSON.stringify(out), '*');
});
</script>"""

# Headless Chromium will not open a window narrower than 500 px, so the page is measured inside an iframe of
# the wanted width (its own viewport: media queries and innerWidth follow the iframe), and reports back.
_FRAME = """<!doctype html><html><body style="margin:0">
<iframe src="_probe.html" style="width:{width}px;height:1000px;border:0"></iframe>
<script>window.addEventListener('message', e => {{
  const pre = document.createElement('pre'); pre.id = 'probe-result';
  pre.textContent = 'PROBE' + e.data + 'END'; document.body.appendChild(pre);
}});</script></body></html>"""


def _measure(page: Path, width: int, tmp: Path) -> dict:
    probe, frame = page.with_name("_probe.html"), page.with_name("_frame.html")
    probe.write_text(page.read_text().replace("</body>", _PROBE + "</body>"))
    frame.write_text(_FRAME.format(width=width))
    try:
        proc = subprocess.run(
            [str(_CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp / f'profile{width}'}", "--window-size=1600,1200", "--hide-scrollbars",
             "--allow-file-access-from-files", "--virtual-time-budget=5000", "--dump-dom", frame.as_uri()],
            capture_output=True, text=True, timeout=120)
    finally:
        probe.unlink()
        frame.unlink()
    found = re.search(r'<pre id="probe-result">PROBE(.*?)END</pre>', proc.stdout, re.S)
    assert found, proc.stdout[:500] + proc.stderr[-2000:]
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


@pytest.mark.skipif(not _CHROMIUM.exists(), reason="chromium is not installed (/usr/bin/chromium)")
@pytest.mark.parametrize("width", [1400, 420])
def test_the_page_fits_the_window_and_every_figure_loads_in_chromium(report, tmp_path, width):
    out, _, results = report
    for page in (out / "index.html", out / SINGLE_FILE_NAME):
        m = _measure(page, width, tmp_path)
        assert m["width"] == width, m
        assert m["scroll"] <= m["width"], (page.name, m)  # no horizontal scrolling
        assert m["images"] == 10 and m["broken"] == 0 and m["no_alt"] == 0, m
        assert m["headline_rows"] == len(MEMBERS)
        assert [t.strip() for t in m["headline_text"]] == [v["headline"] for v in results["verdict"].values()]


def test_shift_figures_name_the_probes_attack_not_the_main_one():
    from serobust.report.html import _probe_attack

    meta = {"main_attack": "autoattack", "probe_attack": "pgd(random_start=True, steps=10)"}
    assert _probe_attack(meta) == "PGD-10"
    assert _probe_attack({"main_attack": "autoattack"}) == "AutoAttack"  # older runs did not record the probe attack
