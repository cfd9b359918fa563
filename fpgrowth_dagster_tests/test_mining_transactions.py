"""Reading transactions: long CSV / gzipped CSV / Parquet, basket lines, FIMI; filters; validation errors."""

from __future__ import annotations

import gzip
import io
import random
from pathlib import Path

import pandas as pd
import pytest

from fpgrowth_dagster.mining import InputError, LongFormat, RowFilter, read_basket, read_fimi, read_long, to_baskets
from fpgrowth_dagster.mining.transactions import group_baskets

ONLINE_RETAIL = "online_retail/online_retail_2010-12_to_2011-05.csv.gz"
CLEANING = ("InvoiceNo not_startswith C", "Quantity > 0")

SAMPLE_CSV = """InvoiceNo,StockCode,Description,Quantity,InvoiceDate,CustomerID,Country
536365,85123A,"HEART, WHITE",6,2010-12-01 08:26:00,17850,United Kingdom
536365,71053,LANTERN,6,2010-12-01 08:26:00,17850,United Kingdom
536365,85123A,"HEART, WHITE",2,2010-12-01 08:26:00,17850,United Kingdom
536366,NA,NOT AVAILABLE,1,2010-12-01 08:28:00,,France
C536367,71053,LANTERN,-1,2010-12-01 08:30:00,13047,France
536368,22633,HAND WARMER,0,2010-12-01 08:34:00,13047,France
"""


def sample_format(**kwargs) -> LongFormat:
    base = dict(transaction_column="InvoiceNo", item_column="StockCode", group_column="Country")
    base.update(kwargs)
    return LongFormat(**base)


@pytest.fixture
def sample_csv(tmp_path: Path) -> Path:
    path = tmp_path / "lines.csv"
    path.write_text(SAMPLE_CSV)
    return path


def test_long_csv_keeps_labels_exact_and_reads_groups(sample_csv: Path) -> None:
    frame = read_long(sample_csv, sample_format())
    assert list(frame.columns) == ["transaction", "item", "group"]
    assert frame["item"].tolist() == ["85123A", "71053", "85123A", "NA", "71053", "22633"]
    assert frame["transaction"].tolist()[0] == "536365"
    assert list(frame.index) == [1, 2, 3, 4, 5, 6]


def test_integer_ids_with_missing_values_do_not_become_floats(sample_csv: Path, tmp_path: Path) -> None:
    fmt = LongFormat("CustomerID", "StockCode", filters=("CustomerID notnull",))
    assert read_long(sample_csv, fmt)["transaction"].tolist() == ["17850"] * 3 + ["13047"] * 2
    parquet = tmp_path / "lines.parquet"
    pd.read_csv(sample_csv).to_parquet(parquet)  # CustomerID becomes float64 with NaN here
    assert pd.read_parquet(parquet)["CustomerID"].dtype == "float64"
    assert read_long(parquet, fmt)["transaction"].tolist() == ["17850"] * 3 + ["13047"] * 2


def test_gzip_and_parquet_give_the_same_frame_by_suffix_or_magic_bytes(sample_csv: Path, tmp_path: Path) -> None:
    expected = read_long(sample_csv, sample_format())
    gz = tmp_path / "lines.csv.gz"
    gz.write_bytes(gzip.compress(sample_csv.read_bytes()))
    no_suffix_gz = tmp_path / "gz_without_suffix"
    no_suffix_gz.write_bytes(gz.read_bytes())
    parquet = tmp_path / "lines.parquet"
    pd.read_csv(sample_csv, dtype={"InvoiceNo": str, "StockCode": str}, keep_default_na=False).to_parquet(parquet)
    no_suffix_parquet = tmp_path / "parquet_without_suffix"
    no_suffix_parquet.write_bytes(parquet.read_bytes())
    for source in (gz, no_suffix_gz, parquet, no_suffix_parquet):
        pd.testing.assert_frame_equal(read_long(source, sample_format()), expected, check_dtype=False)


def test_binary_file_object_uses_its_name_in_messages(sample_csv: Path) -> None:
    with open(sample_csv, "rb") as handle:
        assert len(read_long(handle, sample_format())) == 6
    stream = io.BytesIO(sample_csv.read_bytes())
    with pytest.raises(InputError, match=r"s3://bucket/lines\.csv: missing item column 'Item'"):
        read_long(stream, sample_format(item_column="Item"), name="s3://bucket/lines.csv")


def test_filters_drop_cancellations_and_non_positive_quantities(sample_csv: Path) -> None:
    frame = read_long(sample_csv, sample_format(filters=CLEANING), extra_columns=["Quantity"])
    assert frame["transaction"].tolist() == ["536365", "536365", "536365", "536366"]
    assert frame["Quantity"].tolist() == [6, 6, 2, 1]
    assert list(frame.index) == [1, 2, 3, 4]


def test_items_are_deduplicated_within_a_transaction_and_baskets_are_deterministic(sample_csv: Path) -> None:
    frame = read_long(sample_csv, sample_format())
    baskets = to_baskets(frame)
    # transactions sorted by label: 536365, 536366, 536368, C536367
    assert baskets == [["71053", "85123A"], ["NA"], ["22633"], ["71053"]]
    shuffled = frame.sample(frac=1.0, random_state=3)
    assert to_baskets(shuffled) == baskets
    assert group_baskets(frame) == {"France": [["NA"], ["22633"], ["71053"]], "United Kingdom": [["71053", "85123A"]]}


def test_time_column_is_parsed_to_datetime(sample_csv: Path) -> None:
    frame = read_long(sample_csv, sample_format(time_column="InvoiceDate"))
    assert pd.api.types.is_datetime64_any_dtype(frame["time"])
    assert frame["time"].iloc[0] == pd.Timestamp("2010-12-01 08:26:00")
    later = read_long(sample_csv, sample_format(time_column="InvoiceDate", filters=("InvoiceDate >= 2010-12-01 08:30",)))
    assert later["transaction"].tolist() == ["C536367", "536368"]


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("Quantity == 6", [1, 2]),
        ("Quantity != 6", [3, 4, 5, 6]),
        ("Quantity > 1", [1, 2, 3]),
        ("Quantity >= 1", [1, 2, 3, 4]),
        ("Quantity < 1", [5, 6]),
        ("Quantity <= 0", [5, 6]),
        ("Country in France,Germany", [4, 5, 6]),
        ("Country not_in France", [1, 2, 3]),
        ("InvoiceNo startswith C", [5]),
        ("InvoiceNo not_startswith C", [1, 2, 3, 4, 6]),
        ("CustomerID notnull", [1, 2, 3, 5, 6]),
        ("Description == HEART, WHITE", [1, 3]),
        ("CustomerID == 13047", [5, 6]),
    ],
)
def test_each_filter_operator(sample_csv: Path, text: str, kept: list[int]) -> None:
    frame = read_long(sample_csv, sample_format(filters=(text,)))
    assert list(frame.index) == kept


def test_filter_parse_and_from_dict() -> None:
    assert RowFilter.parse("Quantity > 0") == RowFilter("Quantity", ">", 0)
    assert RowFilter.parse("InvoiceNo not_startswith C") == RowFilter("InvoiceNo", "not_startswith", "C")
    assert RowFilter.parse("Unit Price >= 2.5") == RowFilter("Unit Price", ">=", 2.5)
    assert RowFilter.parse("Country in France, EIRE").value == ("France", "EIRE")
    assert RowFilter.parse("CustomerID notnull") == RowFilter("CustomerID", "notnull")
    assert RowFilter.from_dict({"column": "Quantity", "op": ">", "value": 0}) == RowFilter("Quantity", ">", 0)
    assert RowFilter.from_dict(RowFilter("Country", "in", ["A", "B"]).to_dict()) == RowFilter("Country", "in", ("A", "B"))
    with pytest.raises(InputError, match="cannot parse filter 'Quantity is positive'"):
        RowFilter.parse("Quantity is positive")
    with pytest.raises(InputError, match="unknown filter operator '=~'"):
        RowFilter.from_dict({"column": "Quantity", "op": "=~", "value": "1"})
    with pytest.raises(InputError, match=r"unknown filter keys \['colour'\]"):
        RowFilter.from_dict({"column": "Quantity", "op": ">", "value": 0, "colour": "red"})
    with pytest.raises(InputError, match="needs a numeric or time value, got 'many'"):
        RowFilter.parse("Quantity > many")


def test_online_retail_cleaned_matches_its_source_statistics(data_dir: Path) -> None:
    fmt = LongFormat("InvoiceNo", "StockCode", group_column="Country", time_column="InvoiceDate", filters=CLEANING)
    frame = read_long(data_dir / ONLINE_RETAIL, fmt)
    baskets = to_baskets(frame)
    assert len(baskets) == 8455
    assert len({item for basket in baskets for item in basket}) == 3400
    assert max(map(len, baskets)) == 674
    assert "85123A" in baskets[0] or any("85123A" in b for b in baskets)
    groups = group_baskets(frame)
    assert len(groups) == 36
    assert {name: len(groups[name]) for name in ("United Kingdom", "Germany", "France", "Spain")} == {
        "United Kingdom": 7726, "Germany": 177, "France": 149, "Spain": 31,
    }


def test_basket_format_keeps_items_exactly_as_split(data_dir: Path, tmp_path: Path) -> None:
    baskets = read_basket(data_dir / "groceries" / "groceries.csv")
    assert len(baskets) == 9835
    items = {item for basket in baskets for item in basket}
    assert len(items) == 169
    assert "cream cheese " in items and "cream cheese" not in items
    assert sum("whole milk" in b for b in baskets) == 2513
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes(b"b;a;b\r\n\r\nc ;a\r\n")
    assert read_basket(crlf, ";") == [["a", "b"], [], ["a", "c "]]
    gz = tmp_path / "baskets.gz"
    gz.write_bytes(gzip.compress(b"x,y\ny"))
    assert read_basket(gz) == [["x", "y"], ["y"]]


def test_fimi_format_plain_and_gzip_with_trailing_spaces(data_dir: Path, tmp_path: Path) -> None:
    retail = read_fimi(data_dir / "retail" / "retail.dat.gz")
    assert len(retail) == 88162
    assert len({i for t in retail for i in t}) == 16470
    chess = read_fimi(data_dir / "chess" / "chess.dat")
    assert len(chess) == 3196 and all(len(t) == 37 for t in chess)
    path = tmp_path / "tiny.dat"
    path.write_bytes(b"3 1 2 \n2 2 \n\n5")
    assert read_fimi(path) == [["1", "2", "3"], ["2"], [], ["5"]]


# --------------------------------------------------------------------------- errors


def test_missing_columns_are_named_with_the_columns_that_exist(sample_csv: Path) -> None:
    with pytest.raises(InputError) as info:
        read_long(sample_csv, sample_format(transaction_column="Invoice", group_column="Region"))
    message = str(info.value)
    assert str(sample_csv) in message
    assert "transaction column 'Invoice'" in message and "group column 'Region'" in message
    assert "InvoiceNo, StockCode, Description, Quantity, InvoiceDate, CustomerID, Country" in message


def test_filter_on_missing_column_is_named(sample_csv: Path) -> None:
    with pytest.raises(InputError, match=r"missing column 'Qty' used by filter 'Qty > 0'; the file has columns: InvoiceNo"):
        read_long(sample_csv, sample_format(filters=("Qty > 0",)))


def test_empty_inputs_are_errors_naming_the_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InputError, match=r"empty\.csv: empty file"):
        read_long(empty, sample_format())
    header_only = tmp_path / "header.csv"
    header_only.write_text("InvoiceNo,StockCode,Country\n")
    with pytest.raises(InputError, match=r"header\.csv: no data rows"):
        read_long(header_only, sample_format())
    for reader in (read_basket, read_fimi):
        with pytest.raises(InputError, match=r"empty\.csv: no transactions"):
            reader(empty)
    with pytest.raises(InputError, match=r"missing\.csv: file not found"):
        read_long(tmp_path / "missing.csv", sample_format())


def test_filters_that_remove_everything_are_listed(sample_csv: Path) -> None:
    with pytest.raises(InputError) as info:
        read_long(sample_csv, sample_format(filters=("InvoiceNo not_startswith C", "Quantity > 100")))
    message = str(info.value)
    assert "no rows left after the filters" in message
    assert "'InvoiceNo not_startswith C' removed 1 of 6" in message
    assert "'Quantity > 100' removed 5 of 5" in message


def test_nulls_in_key_columns_name_the_rows(sample_csv: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"column 'CustomerID' has 1 empty or null values, in data rows 4 "):
        read_long(sample_csv, LongFormat("CustomerID", "StockCode"))
    many = tmp_path / "many.csv"
    many.write_text("t,i\n" + "".join(f"{n},{'' if n % 2 else 'x'}\n" for n in range(1, 15)))
    with pytest.raises(InputError, match=r"many\.csv: column 'i' has 7 empty or null values, in data rows 1, 3, 5, 7, 9 and 2 more"):
        read_long(many, LongFormat("t", "i"))


def test_numeric_filter_on_text_names_the_offending_value(tmp_path: Path) -> None:
    path = tmp_path / "qty.csv"
    path.write_text("t,i,Quantity\n1,a,3\n2,b,lots\n3,c,4\n")
    with pytest.raises(InputError) as info:
        read_long(path, LongFormat("t", "i", filters=("Quantity > 0",)))
    message = str(info.value)
    assert "qty.csv" in message and "'Quantity'" in message and "'lots'" in message and "data row 2" in message
    with pytest.raises(InputError, match=r"qty\.csv: filter 'Quantity > 2011-01-01' compares times but column "
                                         r"'Quantity' holds the value '3', which is not a time \(data row 1"):
        read_long(path, LongFormat("t", "i", filters=("Quantity > 2011-01-01",)))


def test_unparsable_times_are_named(tmp_path: Path) -> None:
    path = tmp_path / "times.csv"
    path.write_text("t,i,when\n1,a,2011-01-01 10:00\n2,b,yesterday\n3,c,2011-01-02 11:00\n")
    with pytest.raises(InputError, match=r"times\.csv: time column 'when' has 1 values that are not times, "
                                         r"first 'yesterday' in data row 2"):
        read_long(path, LongFormat("t", "i", time_column="when"))


def test_empty_basket_item_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "baskets.csv"
    path.write_text("a,b\nc,,d\n")
    with pytest.raises(InputError, match=r"baskets\.csv: line 2 has an empty item"):
        read_basket(path)


def test_many_row_shuffles_give_the_same_baskets() -> None:
    rows = [(f"t{n % 7}", f"i{n % 5}") for n in range(60)]
    expected = to_baskets(pd.DataFrame(rows, columns=["transaction", "item"]))
    rng = random.Random(7)
    for _ in range(5):
        rng.shuffle(rows)
        assert to_baskets(pd.DataFrame(rows, columns=["transaction", "item"])) == expected
