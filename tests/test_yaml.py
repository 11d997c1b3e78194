"""The one YAML reader (:func:`mentor_ray.common.yamlio.load_yaml`): what it refuses, in one line naming the
file, and two properties over generated input (hypothesis): plain mappings come back unchanged, and no text
makes it raise anything but a one-line ConfigError."""

from __future__ import annotations

import os
import threading
import time

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mentor_ray.common.errors import ConfigError
from mentor_ray.common.yamlio import MAX_BYTES, load_yaml

MAX_MESSAGE = 600  # a file name, a key or value cut to 200 characters, and the rule


def _refused(path_or_name, text=None, **kw) -> str:
    with pytest.raises(ConfigError) as exc:
        load_yaml(path_or_name, text=text, **kw)
    msg = str(exc.value)
    assert "\n" not in msg and len(msg) <= MAX_MESSAGE, msg
    return msg


def test_a_duplicate_key_at_any_depth_is_refused_with_both_lines(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("name: x\nfixed:\n  inner:\n    lr: 1\n    tau: 2\n    lr: 3\n")
    assert _refused(path) == f"{path}: key 'lr' appears twice (lines 4 and 6); keep one"
    assert _refused("s", "- {a: 1, a: 2}\n", mapping=False) == "s: key 'a' appears twice (lines 1 and 1); keep one"


def test_the_same_key_in_two_mappings_is_no_duplicate():
    assert load_yaml("s", text="a: {x: 1}\nb: {x: 2}\n") == {"a": {"x": 1}, "b": {"x": 2}}


def test_an_alias_bomb_is_refused_before_it_expands():
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]  # 10**10 values
    started = time.perf_counter()
    msg = _refused("bomb.yaml", "\n".join(levels) + "\n")
    assert time.perf_counter() - started < 2
    assert msg.startswith("bomb.yaml: its aliases (*name) expand to more than 100,000 values")


def test_a_few_aliases_are_fine():
    assert load_yaml("s", text="base: &b {lr: 1}\nother: *b\n") == {"base": {"lr": 1}, "other": {"lr": 1}}


def test_a_recursive_alias_is_refused():
    assert "expand to more than" in _refused("loop.yaml", "a: &x [1, *x]\n")


def test_a_file_over_a_mebibyte_is_refused_unread(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("k: " + "v" * MAX_BYTES + "\n")
    assert _refused(path) == f"{path}: {MAX_BYTES + 4:,} bytes; a YAML file may have at most {MAX_BYTES:,}"
    assert "characters of YAML" in _refused("text", "v" * (MAX_BYTES + 1))


@pytest.mark.parametrize("text, kind", [("- 1\n- 2\n", "list"), ("just text\n", "str"), ("3\n", "int")])
def test_a_document_that_is_no_mapping_is_refused_where_one_is_needed(text, kind):
    assert _refused("f.yaml", text) == f"f.yaml: must be a mapping of key: value lines; found a {kind}"
    assert load_yaml("f.yaml", text=text, mapping=False) == yaml.safe_load(text)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "~\n"])
def test_an_empty_document_is_an_empty_mapping(text):
    assert load_yaml("f", text=text) == {}


def test_invalid_utf8_is_unreadable_not_a_crash(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    assert _refused(path) == f"{path}: unreadable (UnicodeDecodeError)"


def test_a_syntax_error_names_the_line_and_column():
    assert _refused("f", "a: [1, 2\nb: 3\n").startswith("f: not valid YAML at line 2, column 2: ")


def test_a_missing_file_and_a_directory_are_refused(tmp_path):
    assert _refused(tmp_path / "nope.yaml") == f"{tmp_path / 'nope.yaml'}: no such file"
    assert _refused(tmp_path) == f"{tmp_path}: not a regular file"


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def read():
        try:
            load_yaml(fifo)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    if reader.is_alive():  # it opened the pipe and waits: give it a writer so that the thread ends
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("load_yaml blocked on a FIFO")
    assert len(outcome) == 1 and str(outcome[0]) == f"{fifo}: not a regular file"


def test_what_names_the_source_and_long_keys_are_cut():
    key = "k" * 1000
    msg = _refused("x", f"{key}: 1\n{key}: 2\n", what="override lr=...")
    assert msg.startswith("override lr=...: key 'kkkk") and "... (1,002 characters) appears twice" in msg


@pytest.mark.parametrize("text", ["when: 2024-13-45\n", "n: " + "9" * 5000 + "\n", "a: \x1f\n"],
                         ids=["date", "long-int", "control-character"])
def test_a_scalar_python_cannot_build_is_a_config_error(text):
    _refused("f.yaml", text)


# --------------------------------------------------------------------------- properties

SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=False) | st.text(max_size=40))
MAPPINGS = st.dictionaries(st.text(max_size=20), SCALARS | st.lists(SCALARS, max_size=4), max_size=8)
FAST = settings(max_examples=150, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(MAPPINGS)
def test_a_dumped_mapping_of_plain_values_loads_back_unchanged(mapping):
    assert load_yaml("generated", text=yaml.safe_dump(mapping)) == mapping


# YAML's own characters, so that generated text is often nearly YAML (anchors, aliases, flow collections,
# block scalars, tags, directives) rather than a plain scalar
YAMLISH = st.text(alphabet=st.sampled_from(list("ab1:-?,[]{}&*!|>'\"#%@` \n\t.~<=")), max_size=60)


@FAST
@given(YAMLISH | st.text(max_size=60))
@example("&a [*a, *a]")
@example("a: !!python/object:os.system {}")
@example("%YAML 1.1\n---\na: 1\n")
@example("<<: [*x]")
@example("a: 1\na: 2\n")
@example("? [1, 2]\n: x\n")
def test_any_text_loads_or_is_one_config_error_line(text):
    for mapping in (True, False):
        try:
            load_yaml("generated.yaml", text=text, mapping=mapping)
        except ConfigError as exc:
            msg = str(exc)
            assert msg.startswith("generated.yaml: ") and "\n" not in msg and len(msg) <= MAX_MESSAGE, msg
