"""Streaming TSV reader, MMBench (circular groups, image references, lazy base64) and HR-Bench (cycles)."""

import base64
import csv
import inspect
import random
import tracemalloc

import pytest

from eval.readers.hrbench import group_questions, iter_hrbench_rows, read_hrbench
from eval.readers.images import decode_base64, image_from_bytes
from eval.readers.mmbench import read_mmbench
from eval.readers.tsv import TsvReader, is_missing
from seal.core.errors import InputError
from tests.fixtures_bench import (HRBENCH_COLUMNS, MMBENCH_COLUMNS, b64, big_jpeg_bytes, hrbench_rows, jpeg_bytes,
                                  mmbench_rows, write_hrbench_tsv, write_mmbench_tsv, write_tsv)


# ---------------------------------------------------------------------- generic TSV
def test_reads_columns_by_name_with_huge_fields(tmp_path):
    csv.field_size_limit(131072)  # the stdlib default: the reader must raise it itself
    big = "x" * 300_000
    path = write_tsv(tmp_path / "t.tsv", ["b", "index", "a"],
                     [{"index": 1, "a": "one", "b": big}, {"index": 2, "a": 'say "hi"\tnow', "b": None}])
    with path.open("a") as f:
        f.write("\n")  # a trailing blank line is not a row
    reader = TsvReader(path, required=["index", "a"])
    assert reader.columns == ["b", "index", "a"]
    rows = list(reader)
    assert [r.line for r in rows] == [2, 3] and [r.integer("index") for r in rows] == [1, 2]
    assert rows[0]["b"] == big and rows[1]["a"] == 'say "hi"\tnow' and rows[1].text("b") is None
    assert reader.read_row_at(rows[1].offset, rows[1].line).values == rows[1].values


def test_unquoted_file_with_bom_and_multiline_field(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_bytes("\ufeffindex\tq\n7\t\"two\nlines\"\n8\tplain\n".encode("utf-8"))
    rows = list(TsvReader(path, ["index", "q"]))
    assert rows[0]["q"] == "two\nlines" and rows[1].line == 4 and rows[1]["q"] == "plain"


@pytest.mark.parametrize("body, needle", [
    ("index\tq\n1\ta\n2\n", "line 3: expected 2 tab-separated fields"),
    ("index\tq\n1\ta\tb\n", "line 2: expected 2 tab-separated fields"),
    ('index\tq\n1\t"unterminated\n', "line 2: malformed TSV row"),
    ("", "empty file"),
    ("index\tq\tq\n", "duplicated column"),
    ("index\tquestion\n1\ta\n", "missing required column(s) 'q'"),
])
def test_malformed_tsv_names_file_and_line(tmp_path, body, needle):
    path = tmp_path / "bad.tsv"
    path.write_text(body)
    with pytest.raises(InputError) as err:
        list(TsvReader(path, ["index", "q"]))
    assert needle in str(err.value) and err.value.path == str(path)


def test_non_integer_and_non_utf8(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("index\tq\n1.0\ta\nabc\tb\n")
    rows = list(TsvReader(path, ["index"]))
    assert rows[0].integer("index") == 1
    with pytest.raises(InputError, match="line 3: column 'index': expected an integer, found 'abc'"):
        rows[1].integer("index")
    path.write_bytes(b"index\tq\n1\t\xff\xfe\n")
    with pytest.raises(InputError, match="line 2: not valid UTF-8"):
        list(TsvReader(path))


def test_missing_values_follow_pandas():
    assert is_missing(None) and is_missing("") and is_missing("nan") and is_missing(" NaN ")
    assert not is_missing("0") and not is_missing("none of these")


# ---------------------------------------------------------------------- MMBench
def test_mmbench_circular_groups_and_rotated_answers(tmp_path):
    expected = write_mmbench_tsv(tmp_path / "MMBench_DEV_EN.tsv")
    data = read_mmbench(tmp_path / "MMBench_DEV_EN.tsv")
    assert len(data) == expected["n_rows"] == 8 and data.has_answers
    questions = data.questions()
    assert [(q.g_index, [r.index for r in q.rows]) for q in questions] == [
        (7, [7, 1000007, 2000007, 3000007]), (12, [12, 1000012]), (30, [30, 1000030])]
    q7 = questions[0]
    assert [r.answer for r in q7.rows] == ["A", "D", "C", "B"]  # right-rotation of the labels
    assert all(r.options[r.answer_index] == "green" for r in q7.rows)
    assert q7.rows[1].options == ("red", "blue", "black", "green") and not q7.rows[1].is_main
    assert q7.main.hint == "Look at the whole image." and q7.category == "image_scene"
    two = questions[1].main
    assert two.options == ("yes", "no") and two.hint is None and questions[2].main.hint is None  # NaN and "nan"
    assert two.l2_category == "coarse_perception" and two.split == "dev" and two.line == 6


def test_mmbench_image_references_and_lazy_big_base64(tmp_path):
    write_mmbench_tsv(tmp_path / "mm.tsv", big_image=True)
    data = read_mmbench(tmp_path / "mm.tsv")
    big = data.image_bytes(7)
    assert len(base64.b64encode(big)) > 131072 and big[:3] == b"\xff\xd8\xff"
    assert data.row(3000007).image_index == 7 and data.image_bytes(3000007) == big
    assert data.row(30).image_index == 7 and data.row(1000030).image_index == 7  # reference to another question
    assert data.row(12).image_index == 12 and data.image_bytes(12) != big
    img = data.image(30)
    assert img.mode == "RGB" and img.size == image_from_bytes(big).size and img.size[0] >= 200
    assert not any(isinstance(v, str) and len(v) > 1000 for r in data for v in vars(r).values())


def test_mmbench_test_split_and_shuffled_columns(tmp_path):
    shuffled = list(MMBENCH_COLUMNS)
    random.Random(3).shuffle(shuffled)
    write_mmbench_tsv(tmp_path / "dev.tsv")
    write_mmbench_tsv(tmp_path / "shuffled.tsv", columns=shuffled)
    write_mmbench_tsv(tmp_path / "test.tsv", with_answers=False)
    dev, mixed, test = (read_mmbench(tmp_path / f"{n}.tsv") for n in ("dev", "shuffled", "test"))
    assert list(mixed) == list(dev) and mixed.reader.columns == shuffled
    assert not test.has_answers and all(r.answer is None and r.answer_index is None for r in test)
    assert [r.options for r in test] == [r.options for r in dev] and {r.split for r in test} == {"test"}


def test_mmbench_g_index_column_wins(tmp_path):
    rows = mmbench_rows()[:4]
    for row in rows:
        row["g_index"] = 7
    rows[3] = dict(rows[3], index=99)  # a copy whose index does not encode its group
    write_tsv(tmp_path / "g.tsv", [*MMBENCH_COLUMNS, "g_index"], rows)
    questions = read_mmbench(tmp_path / "g.tsv").questions()
    assert len(questions) == 1 and [r.index for r in questions[0].rows] == [7, 99, 1000007, 2000007]


def _broken(rows, i, **change):
    rows = [dict(r) for r in rows]
    rows[i].update(change)
    return rows


@pytest.mark.parametrize("change, needle", [
    (lambda rows: _broken(rows, 4, image="55"), "line 6: column 'image': refers to row index 55"),
    (lambda rows: _broken(rows, 1, index="1e6x"), "line 3: column 'index': expected an integer"),
    (lambda rows: _broken(rows, 2, index=1000007), "line 4: column 'index': 1000007 already used on line 3"),
    (lambda rows: _broken(rows, 0, C=None), "line 2: options must fill a prefix"),
    (lambda rows: _broken(rows, 4, answer="C"), "line 6: column 'answer': expected one of ['A', 'B']"),
    (lambda rows: _broken(rows, 0, image=rows[0]["image"][:-3]), "line 2: column 'image'"),
    (lambda rows: _broken(rows, 6, image="not-an-index"), "line 8: column 'image'"),
    (lambda rows: [dict(rows[1], image=rows[0]["image"])] + rows[4:6], "no row has index 7"),
])
def test_mmbench_malformed_rows(tmp_path, change, needle):
    path = write_tsv(tmp_path / "bad.tsv", MMBENCH_COLUMNS, change(mmbench_rows()))
    with pytest.raises(InputError) as err:
        read_mmbench(path)
    assert needle in str(err.value) and err.value.path == str(path)


def test_mmbench_missing_columns_and_corrupt_image(tmp_path):
    cols = [c for c in MMBENCH_COLUMNS if c != "category"]
    path = write_tsv(tmp_path / "nocat.tsv", cols, mmbench_rows())
    with pytest.raises(InputError, match="missing required column.*'category'"):
        read_mmbench(path)
    rows = mmbench_rows()[4:6]  # question 12 and its copy
    rows[0]["image"] = b64(b"definitely not an image, just some bytes that are long enough to pass")
    data = read_mmbench(write_tsv(tmp_path / "corrupt.tsv", MMBENCH_COLUMNS, rows))
    with pytest.raises(InputError, match="line 2: column 'image': not a recognised image format"):
        data.image(1000012)
    with pytest.raises(InputError, match="not valid base64"):
        decode_base64("abc*", "x.tsv", "line 9: column 'image'")
    truncated = jpeg_bytes(noise_seed=1)[:400]
    with pytest.raises(InputError, match="cannot (read|decode) image"):
        image_from_bytes(truncated, "x.tsv")


# ---------------------------------------------------------------------- HR-Bench
PARQUET_ORDER = ["index", "answer", "question", "A", "B", "C", "D", "category", "cycle_category", "image"]


def test_hrbench_groups_four_cycles_per_question(tmp_path):
    expected = write_hrbench_tsv(tmp_path / "hr_bench_4k.tsv", n_questions=2, columns=PARQUET_ORDER)
    data = read_hrbench(tmp_path / "hr_bench_4k.tsv")
    assert len(data) == 8 and len(data.questions) == expected["n_samples"] == 2
    single, cross = data.questions
    assert (single.category, cross.category) == ("single", "cross") and single.cycles == (0, 1, 2, 3)
    assert [r.index for r in cross.rows] == [4, 5, 6, 7] and [r.answer for r in cross.rows] == list("ABCD")
    assert {r.options[r.answer_index] for r in single.rows} == {"27B"}  # the correct option moves, same text
    assert data.image(cross.rows[2]).size == (64, 48)
    assert data.image_bytes(single.rows[0]) != data.image_bytes(cross.rows[0])


def test_hrbench_grouping_uses_the_image_not_just_the_text(tmp_path):
    write_hrbench_tsv(tmp_path / "hr.tsv", n_questions=3, same_text=True)
    data = read_hrbench(tmp_path / "hr.tsv")
    assert len(data.questions) == 3 and all(q.cycles == (0, 1, 2, 3) for q in data.questions)


def test_hrbench_is_streamed(tmp_path):
    path = tmp_path / "hr_big.tsv"
    write_hrbench_tsv(path, n_questions=12, image_pad=250_000)  # 48 rows of ~330 KB: a 16 MB file
    with path.open("a") as f:
        f.write("999\tbroken row\n")  # only reached at the very end
    size = path.stat().st_size
    rows = iter_hrbench_rows(path)
    assert inspect.isgenerator(rows)
    tracemalloc.start()
    try:
        first = next(rows)
        seen = [first] + [next(rows) for _ in range(47)]  # all good rows come out before the error
        with pytest.raises(InputError, match="line 50: expected 10 tab-separated fields"):
            next(rows)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert first.index == 0 and [r.index for r in seen] == list(range(48))
    row_chars = len(hrbench_rows(1, image_pad=250_000)[0]["image"])
    assert peak < 12 * row_chars < size / 4, f"peak {peak} bytes while streaming a {size}-byte file"


@pytest.mark.parametrize("mutate, needle", [
    (lambda rows: rows[:-1], "has cycles [0, 1, 2]"),
    (lambda rows: _broken(rows, 2, cycle_category="1"), "cycle 1 of the question on line 2"),
    (lambda rows: _broken(rows, 0, category="multi"), "line 2: column 'category'"),
    (lambda rows: _broken(rows, 5, cycle_category="4"), "line 7: column 'cycle_category': expected 0..3"),
    (lambda rows: _broken(rows, 3, answer="E"), "line 5: column 'answer'"),
    (lambda rows: _broken(rows, 1, B=""), "line 3: column 'B'"),
    (lambda rows: _broken(rows, 1, image=""), "line 3: column 'image'"),
])
def test_hrbench_malformed(tmp_path, mutate, needle):
    path = write_tsv(tmp_path / "bad.tsv", HRBENCH_COLUMNS, mutate(hrbench_rows(2)))
    with pytest.raises(InputError) as err:
        read_hrbench(path)
    assert needle in str(err.value) and err.value.path == str(path)


def test_hrbench_partial_groups_allowed_on_request(tmp_path):
    write_hrbench_tsv(tmp_path / "hr.tsv")
    rows = list(iter_hrbench_rows(tmp_path / "hr.tsv"))
    questions = group_questions(rows[1:], require_all_cycles=False)
    assert [q.cycles for q in questions] == [(1, 2, 3), (0, 1, 2, 3)]


def test_big_base64_field_survives_the_tsv_path(tmp_path):
    image = b64(big_jpeg_bytes())
    rows = hrbench_rows(1)
    for row in rows:
        row["image"] = image
    data = read_hrbench(write_tsv(tmp_path / "hr.tsv", HRBENCH_COLUMNS, rows, quote_all=False))
    assert len(image) > 131072 and len(data.questions) == 1
    assert base64.b64encode(data.image_bytes(data.rows[3])).decode() == image


def test_truncated_unquoted_last_image_is_caught_while_streaming(tmp_path):
    path = write_tsv(tmp_path / "hr.tsv", HRBENCH_COLUMNS, hrbench_rows(2), quote_all=False)
    path.write_bytes(path.read_bytes()[:-6])  # the newline and 5 base64 chars of the last row's image
    with pytest.raises(InputError, match="line 9: column 'image': .*truncated"):
        read_hrbench(path)
