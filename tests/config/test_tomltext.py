"""The TOML writer against the standard library's reader: what is written reads back equal."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr_core.utils.tomltext import dumps, format_value, loads

AWKWARD = ['say "hi"', "back\\slash", "C:\\new\\table", "line\nbreak\r\n", "tab\there",
           "bell\x07 nul\x00 esc\x1b del\x7f", "é ☃ 🚀 \u2028 \ufeff", "'single'", "'''",
           '"""', "# not a comment", "", " ", "[not.a.table]", "key = value"]


def test_awkward_strings_and_keys_round_trip():
    doc = {"s": {f"k{i}": s for i, s in enumerate(AWKWARD)},
           "odd keys": {s or "empty": 1 for s in AWKWARD if s},
           "": {"": "empty key and table name"}}
    assert loads(dumps(doc)) == doc


@pytest.mark.parametrize("value, text", [
    (1e-3, "0.001"), (5e-4, "0.0005"), (1e-4, "0.0001"), (0.1, "0.1"), (2.0, "2.0"),
    (1e-10, "1e-10"), (1e300, "1e+300"), (-0.0, "-0.0"), (5e-324, "5e-324"),
    (0.1 + 0.2, "0.30000000000000004"), (320000, "320000"), (-2**63, str(-2**63)),
    (True, "true"), (False, "false"), ([280000], "[280000]"), ([], "[]"),
    ([1, "a", [2.5]], '[1, "a", [2.5]]'),
])
def test_values_are_written_exactly(value, text):
    assert format_value(value) == text
    back = loads(f"v = {text}")["v"]
    assert back == value and type(back) is type(value)
    if isinstance(value, float):
        assert math.copysign(1, back) == math.copysign(1, value)


@pytest.mark.parametrize("value, error", [
    (math.inf, "not finite"), (-math.inf, "not finite"), (math.nan, "not finite"),
    (2**63, "64-bit"), (None, "cannot write NoneType"), ({1, 2}, "cannot write set"),
    ("bad \udcff name", "lone surrogate"),
])
def test_values_toml_cannot_hold_are_refused(value, error):
    with pytest.raises((TypeError, ValueError), match=error):
        format_value(value)
    with pytest.raises((TypeError, ValueError), match=f"key 'train.x': .*{error}"):
        dumps({"train": {"x": value}})


def test_nested_tables_and_top_level_values():
    doc = {"top": 1, "a": {"x": 1, "b": {"y": "z", "c": {}}}, "d": {}}
    text = dumps(doc)
    assert loads(text) == doc
    assert text.startswith("top = 1\n\n[a]\nx = 1\n\n[a.b]\n")


scalars = (st.text() | st.booleans() | st.integers(-2**63, 2**63 - 1)
           | st.floats(allow_nan=False, allow_infinity=False))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4), max_leaves=8)
tables = st.dictionaries(st.text(), values, max_size=5)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(), tables, max_size=4))
def test_any_config_shaped_document_round_trips(doc):
    assert loads(dumps(doc)) == doc
