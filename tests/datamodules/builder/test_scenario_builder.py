import gzip
import json
import sys
import types
from collections import Counter
from pathlib import Path

import pytest
from conftest import SHARED

from lightning_fed.datamodules import FKCB, SGH, SGH5Core
from lightning_fed.datamodules.builder.amazon_interactions import Interaction, read_interactions
from lightning_fed.datamodules.builder.scenario_builder import (
    SplitProtocol,
    balanced_chunks,
    build_scenario,
    k_core,
    main,
    split_history,
)
from lightning_fed.datamodules.sequential.sequence_format import read_num_items, read_split
from lightning_fed.datamodules.sequential.sequence_source import ArchiveSource, DirectorySource, embedded_archive
from lightning_fed.datamodules.sequential.statistics import domain_statistics

ROOT = Path(__file__).resolve().parents[3]
FIVE_CORE = ROOT / "tests" / "fixtures" / "amazon-5core"  # real slices (see its README)


def five_core_slice(tmp_path: Path, name: str, users: int) -> Path:
    """The first ``users`` lines of a real amazon-5core file."""
    lines = (FIVE_CORE / f"{name}.txt").read_text().splitlines()
    assert len(lines) >= users, f"the fixture holds {len(lines)} users"
    lines = lines[:users]
    path = tmp_path / f"{name}_{users}.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def events(pairs: list[tuple[str, str]]) -> list[Interaction]:
    return [Interaction(user, item, t, t) for t, (user, item) in enumerate(pairs)]


# --- step 1: k-core ---------------------------------------------------------------------------------------------


def test_k_core_cascades_to_its_fixed_point_by_hand():
    # min 2: pass 1 drops u3 (1 event) and c (1 event); then u2 has 1 event, then b has 1, then u1 has 1: empty.
    assert k_core(events([("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "c"), ("u3", "b")]), 2, 2) == []
    # a 2x2 biclique survives; u3 goes once c goes; an exact duplicate (same time) counts once, so u4 goes too;
    # a repeat at another time is a second interaction and counts
    pairs = [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"), ("u3", "c"), ("u3", "a")]
    duplicate = [Interaction("u4", "a", 7, 6), Interaction("u4", "a", 7, 7)]
    repeat = [Interaction("u5", "b", 8, 8), Interaction("u5", "b", 9, 9)]
    kept = k_core(events(pairs) + duplicate + repeat, 2, 2)
    assert [(e.user, e.item) for e in kept] == [
        ("u1", "a"),
        ("u1", "b"),
        ("u2", "a"),
        ("u2", "b"),
        ("u5", "b"),
        ("u5", "b"),
    ]


def test_k_core_on_a_real_slice_meets_both_thresholds_and_needs_several_passes(tmp_path):
    raw = read_interactions(five_core_slice(tmp_path, "Video_Games", 3000))
    kept = k_core(raw, 10, 5)
    users, items = Counter(e.user for e in kept), Counter(e.item for e in kept)
    assert kept and min(users.values()) >= 10 and min(items.values()) >= 5
    assert k_core(kept, 10, 5) == kept  # a fixed point
    one_pass_users, one_pass_items = Counter(e.user for e in raw), Counter(e.item for e in raw)
    one_pass = [e for e in raw if one_pass_users[e.user] >= 10 and one_pass_items[e.item] >= 5]
    assert len(one_pass) > len(kept)  # a single pass would have stopped short of it


# --- steps 2 and 3: split and sequences ----------------------------------------------------------------------


def test_balanced_chunks():
    assert balanced_chunks(0, 16) == []
    assert balanced_chunks(16, 16) == [(0, 16)]
    assert balanced_chunks(17, 16) == [(0, 9), (9, 17)]
    assert balanced_chunks(33, 16) == [(0, 11), (11, 22), (22, 33)]


@pytest.mark.parametrize(
    ("n", "train", "valid", "test"),
    [
        # 10 items: 2 to evaluation (1 valid, 1 test), each completed to 4 items with the preceding items
        (10, [(0, 8)], [(5, 9)], [(6, 10)]),
        # 21 items: round(4.2) = 4 to evaluation; 17 training items as 9 + 8
        (21, [(0, 9), (9, 17)], [(15, 19)], [(17, 21)]),
        # 40 items: 8 to evaluation, 4 + 4, long enough on their own
        (40, [(0, 16), (16, 32)], [(32, 36)], [(36, 40)]),
        # 3 items: round(0.6) = 1 test item with 2 items of context is too short for any sequence
        (3, [], [], []),
    ],
)
def test_split_history_by_hand(n, train, valid, test):
    history = [f"i{k}" for k in range(n)]
    split = split_history(history, SplitProtocol())
    assert split.train == [history[a:b] for a, b in train]
    assert split.valid == [history[a:b] for a, b in valid]
    assert split.test == [history[a:b] for a, b in test]


def test_split_proportions_and_lengths_on_a_real_slice(tmp_path):
    raw = read_interactions(five_core_slice(tmp_path, "Sports_and_Outdoors", 2000))
    protocol = SplitProtocol(min_user_interactions=5, min_item_interactions=5)
    histories: dict[str, list[str]] = {}
    for e in sorted(k_core(raw, 5, 5), key=lambda e: e.order):
        histories.setdefault(e.user, []).append(e.item)
    for history in histories.values():
        split = split_history(history, protocol)
        n_eval = split.num_valid + split.num_test
        assert n_eval == int(0.2 * len(history) + 0.5)
        assert split.num_test - split.num_valid in (0, 1)
        assert split.num_train + n_eval == len(history)
        for seq in split.train + split.valid + split.test:
            assert 4 <= len(seq) <= 16
        # training never sees an evaluation interaction; each evaluation target is one of the part's items
        assert sum(len(s) for s in split.train) <= split.num_train
        assert [s[-1] for s in split.test][-1:] == history[-1:]


# --- whole scenarios -----------------------------------------------------------------------------------------


def test_built_scenario_is_consistent_and_valid_test_items_belong_to_the_domain(tmp_path):
    path = five_core_slice(tmp_path, "Video_Games", 3000)
    rows = build_scenario({"Games": str(path)}, str(tmp_path / "out"), min_item_interactions=5)
    kept = k_core(read_interactions(path), 10, 5)
    source = DirectorySource(tmp_path / "out")
    n = read_num_items(source, "Games")
    assert n == len({e.item for e in kept}) == rows[0].items
    splits = {s: read_split(source, "Games", s, n) for s in ("train", "valid", "test")}  # validates ids < N
    users = {u for split in splits.values() for u in split.users}
    assert users == set(range(len(users))) == set(range(rows[0].users))  # dense per-domain ids
    assert len({e.user for e in kept}) == len(users)
    assert [rows[0].train, rows[0].valid, rows[0].test] == [len(splits[s]) for s in ("train", "valid", "test")]
    report = json.loads((tmp_path / "out" / "build.json").read_text())
    counts = report["counts"]["Games"]
    assert counts["interactions_kept"] == len(kept)
    assert counts["interactions_valid"] + counts["interactions_test"] == sum(
        int(0.2 * c + 0.5) for c in Counter(e.user for e in kept).values()
    )
    assert (tmp_path / "out" / "statistics.md").read_text().startswith("| Domain | Users | Items |")


def test_three_input_formats_of_the_same_events_build_the_same_scenario(tmp_path):
    path = five_core_slice(tmp_path, "Video_Games", 1500)
    rows = [line.split() for line in path.read_text().splitlines()]
    ratings = tmp_path / "games.csv"
    ratings.write_text("".join(f"u{r[0]},p{i},5.0,{1000 + t}\n" for r in rows for t, i in enumerate(r[1:])))
    reviews = tmp_path / "games.json.gz"
    with gzip.open(reviews, "wt") as f:
        for r in rows:
            for t, i in enumerate(r[1:]):
                f.write(json.dumps({"reviewerID": f"u{r[0]}", "asin": f"p{i}", "unixReviewTime": 1000 + t}) + "\n")
    built = {}
    for name, raw in (("txt", path), ("csv", ratings), ("json", reviews)):
        build_scenario({"Games": str(raw)}, str(tmp_path / name), min_user_interactions=5, min_item_interactions=5)
        built[name] = [(tmp_path / name / "Games" / f).read_text() for f in ("train_data.txt", "test_data.txt")]
    # the raw ids differ (p12 vs 12), so items are numbered in another order; the line structure is the same
    shapes = {k: [[len(line.split("\t")) for line in text.splitlines()] for text in v] for k, v in built.items()}
    assert shapes["csv"] == shapes["json"]
    assert built["csv"] == built["json"]
    assert sorted(map(sorted, shapes["txt"])) == sorted(map(sorted, shapes["csv"]))


def test_same_inputs_and_seed_give_byte_identical_files_and_the_seed_only_permutes_users(tmp_path):
    path = five_core_slice(tmp_path, "Video_Games", 1500)
    kwargs = dict(min_user_interactions=5, min_item_interactions=5)
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        build_scenario(
            {"Home": str(path)}, str(tmp_path / name), seed=seed, archive=str(tmp_path / f"{name}.tgz"), **kwargs
        )
    files = ["Home/num_items.txt", "Home/train_data.txt", "Home/valid_data.txt", "Home/test_data.txt", "build.json"]
    for f in files + ["statistics.md"]:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    assert (tmp_path / "a.tgz").read_bytes() == (tmp_path / "b.tgz").read_bytes()
    a, c = ((tmp_path / x / "Home" / "train_data.txt").read_text().splitlines() for x in ("a", "c"))
    assert a != c
    strip = sorted(line.split("\t", 1)[1] for line in a), sorted(line.split("\t", 1)[1] for line in c)
    assert strip[0] == strip[1]


@pytest.mark.skipif(
    not (SHARED / "amazon-5core").is_dir(), reason="the shared data release is not beside this checkout"
)
def test_shipped_sgh5core_is_what_the_builder_makes_from_the_shared_files(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    main(["--config", "configs/build/sgh5core.yaml", f"--output={tmp_path / 'sgh'}", f"--archive={tmp_path / 'a.tgz'}"])
    assert (tmp_path / "a.tgz").read_bytes() == embedded_archive("sgh5core").read_bytes()
    rows = {r["domain"]: r for r in json.loads((tmp_path / "sgh" / "build.json").read_text())["statistics"]}
    assert [rows[d]["users"] for d in ("Sports", "Games", "Home")] == [3373, 4943, 7321]
    assert [rows[d]["items"] for d in ("Sports", "Games", "Home")] == [4235, 5848, 8848]


def test_statistics_reproduce_table_1_of_the_paper_on_fkcb():
    source = ArchiveSource(embedded_archive("fkcb"))
    table_1 = {  # FMoE-CDSR paper, Table 1
        "Food": (4658, 13564, 4977, 1307, 1332, 8.79),
        "Kitchen": (13382, 32918, 11100, 2172, 2254, 8.60),
        "Clothing": (9240, 34909, 5720, 818, 866, 9.30),
        "Beauty": (5902, 17780, 4668, 836, 855, 10.29),
    }
    for domain, expected in table_1.items():
        row = domain_statistics(source, domain)
        assert (row.users, row.items, row.train, row.valid, row.test, round(row.avg_len, 2)) == expected


def test_sgh5core_scenario_serves_its_three_clients():
    clients = SGH5Core(max_sequences=50).client_datamodules()
    assert list(clients) == ["Sports", "Games", "Home"]
    clients["Games"].setup()
    assert clients["Games"].num_items == 5848


# --- bad input -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("r.csv", "u1,i1,5.0,100\nu1,i2,5.0\n", r"r.csv:2: expected 4 comma-separated fields"),
        ("r.csv", "u1,i1,5.0,100\nu1,i2,5.0,yesterday\n", r"r.csv:2: non-numeric timestamp 'yesterday'"),
        ("r.csv", "u1,i1,good,100\n", r"r.csv:1: non-numeric rating 'good'"),
        ("r.csv", "", r"r.csv: the file holds no interaction"),
        ("v.json", '{"reviewerID": "u", "asin": "a", "unixReviewTime": 1}\n{"asin": \n', r"v.json:2: not a JSON"),
        ("v.json", '{"reviewerID": "u", "asin": "a"}\n', r"v.json:1: missing field\(s\) unixReviewTime"),
        ("v.json", '{"reviewerID": "u", "asin": "a", "unixReviewTime": "noon"}\n', r"v.json:1: non-numeric timestamp"),
        ("s.txt", "1 2 3\n4\n", r"s.txt:2: expected 'user item item ...'"),
        ("x.parquet", "1 2 3\n", r"x.parquet: cannot tell the format"),
    ],
)
def test_bad_input_names_file_line_and_reason_and_leaves_nothing_behind(tmp_path, name, content, message):
    good = five_core_slice(tmp_path, "Video_Games", 1500)
    bad = tmp_path / "raw" / name
    bad.parent.mkdir()
    bad.write_text(content)
    out = tmp_path / "built" / "scenario"
    out.parent.mkdir()
    with pytest.raises(ValueError, match=message):
        build_scenario(
            {"Games": str(good), "Bad": str(bad)}, str(out), min_user_interactions=5, min_item_interactions=5
        )
    assert not out.exists() and list((tmp_path / "built").iterdir()) == []


def test_a_domain_emptied_by_the_filters_is_an_error(tmp_path):
    sports = five_core_slice(tmp_path, "Sports_and_Outdoors", 2000)
    with pytest.raises(ValueError, match=r"Sports_and_Outdoors_2000.txt: domain 'Sports' is empty after the k-core"):
        build_scenario({"Sports": str(sports)}, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_a_failed_rebuild_keeps_the_previous_scenario(tmp_path):
    good = five_core_slice(tmp_path, "Video_Games", 1500)
    kwargs = dict(min_user_interactions=5, min_item_interactions=5)
    build_scenario({"Games": str(good)}, str(tmp_path / "out"), **kwargs)
    before = (tmp_path / "out" / "Games" / "train_data.txt").read_bytes()
    with pytest.raises(ValueError, match="already exists"):
        build_scenario({"Games": str(good)}, str(tmp_path / "out"), **kwargs)
    (tmp_path / "bad.csv").write_text("u,i,1,2\nu,i,1\n")
    with pytest.raises(ValueError, match=r"bad.csv:2"):
        build_scenario({"Games": str(good), "B": str(tmp_path / "bad.csv")}, str(tmp_path / "out"), overwrite=True)
    assert (tmp_path / "out" / "Games" / "train_data.txt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def tree(path: Path) -> dict[str, bytes]:
    if path.is_file():
        return {".": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(path.rglob("*"))}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda out: (out.mkdir(), (out / "notes.txt").write_text("mine")), "not a scenario built by this builder"),
        (lambda out: out.write_text("my file"), "is a file, not a scenario"),
        (lambda out: (out.mkdir(), (out / "build.json").write_text("{}")), "not a scenario built by this builder"),
    ],
)
def test_overwrite_never_touches_what_the_builder_did_not_write(tmp_path, capsys, make, message):
    games = five_core_slice(tmp_path, "Video_Games", 1500)
    out = tmp_path / "data"
    make(out)
    before = tree(out)
    with pytest.raises(SystemExit) as info:
        main([f"--domains={{Games: {games}}}", f"--output={out}", "--overwrite=true", "--min_item_interactions=5"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and str(out) in err and "left as it is" in err
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["data", games.name])  # no hidden leftovers


def test_overwrite_replaces_a_scenario_it_built_but_not_one_with_foreign_files(tmp_path):
    games = five_core_slice(tmp_path, "Video_Games", 1500)
    out = tmp_path / "out"
    build_scenario({"Games": str(games)}, str(out), min_user_interactions=5, min_item_interactions=5)
    rebuilt = build_scenario({"Games": str(games)}, str(out), min_user_interactions=5, min_item_interactions=6,
                             overwrite=True)  # fmt: skip
    assert json.loads((out / "build.json").read_text())["protocol"]["min_item_interactions"] == 6
    (out / "Games" / "my_notes.txt").write_text("keep me")
    before = tree(out)
    with pytest.raises(ValueError, match=r"holds files the builder did not write \(Games/my_notes.txt\)"):
        build_scenario({"Games": str(games)}, str(out), min_user_interactions=5, min_item_interactions=5,
                       overwrite=True)  # fmt: skip
    assert tree(out) == before and rebuilt


def test_builder_command_line_reports_bad_input_without_traceback(tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("u,i,1,later\n")
    with pytest.raises(SystemExit) as info:
        main([f"--domains={{A: {tmp_path / 'bad.csv'}}}", f"--output={tmp_path / 'out'}"])
    assert info.value.code == 2
    assert "bad.csv:1: non-numeric timestamp 'later'" in capsys.readouterr().err


# --- MBG / SGH download --------------------------------------------------------------------------------------


def test_sgh_without_gdown_names_the_layout_the_drive_folder_and_the_builder(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gdown", None)  # import gdown -> ImportError
    with pytest.raises(FileNotFoundError) as info:
        SGH(root=str(tmp_path / "sgh")).prepare_data()
    text = str(info.value)
    assert "gdown is not installed" in text and "1NnZN3LhzdpxwaHiOW8GAUS8noTbdLlQt" in text
    assert "Sport/{num_items.txt,train_data.txt,valid_data.txt,test_data.txt}" in text
    assert "python -m lightning_fed.datamodules.builder" in text and "Patio_Lawn_and_Garden" in text


def test_sgh_offline_download_failure_is_reported(tmp_path, monkeypatch):
    calls = []

    def download_folder(id, output, quiet):  # noqa: A002 - gdown's keyword
        calls.append((id, output))
        raise ConnectionError("Failed to resolve 'drive.google.com'")

    monkeypatch.setitem(sys.modules, "gdown", types.SimpleNamespace(download_folder=download_folder))
    with pytest.raises(FileNotFoundError, match=r"gdown failed: ConnectionError: Failed to resolve"):
        SGH(root=str(tmp_path / "sgh")).prepare_data()
    assert calls == [("1NnZN3LhzdpxwaHiOW8GAUS8noTbdLlQt", str(tmp_path / "sgh"))]


def test_sgh_finds_the_domains_nested_in_a_downloaded_release(tmp_path, monkeypatch):
    fkcb = ArchiveSource(embedded_archive("fkcb"))

    def download_folder(id, output, quiet):  # noqa: A002 - stands in for the release: FKCB's files, renamed
        for name, domain in (("Sport", "Food"), ("Garden", "Beauty"), ("Home", "Clothing")):
            directory = Path(output) / "FedDCSR_data" / name
            directory.mkdir(parents=True)
            for f in ("num_items.txt", "train_data.txt", "valid_data.txt", "test_data.txt"):
                (directory / f).write_text(fkcb.read_text(f"{domain}/{f}"))

    monkeypatch.setitem(sys.modules, "gdown", types.SimpleNamespace(download_folder=download_folder))
    scenario = SGH(root=str(tmp_path / "sgh"), max_sequences=10)
    scenario.prepare_data()
    assert scenario.root == str(tmp_path / "sgh" / "FedDCSR_data")
    sport = scenario.client_datamodules()["Sport"]
    sport.setup()
    assert sport.num_items == 13564


def test_fkcb_never_downloads():
    assert FKCB.drive_folder is None and FKCB().root is None
