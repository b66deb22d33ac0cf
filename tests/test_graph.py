"""Tests for distml.graph: key handling, normalization, validation, ordering and execution."""

from __future__ import annotations

import copy
import operator
import pickle
from functools import partial

import cloudpickle
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distml.errors import CycleError, GraphError
from distml.graph import (
    Ref,
    Task,
    check_graph,
    cull,
    execute_task,
    get_sync,
    identity,
    normalize_graph,
    order,
    to_task,
    wire_key,
)

SETTINGS = settings(derandomize=True, database=None, deadline=None, max_examples=60)


def inc(x):
    return x + 1


def add(*xs):
    return sum(xs)


def kw(a, b=0, *, c=0):
    return (a, b, c)


def pack(*args, **kwargs):
    return args, kwargs


def chain(n: int) -> dict[str, frozenset[str]]:
    deps = {"k0": frozenset()}
    for i in range(1, n):
        deps[f"k{i}"] = frozenset({f"k{i - 1}"})
    return deps


def deps_of(dsk) -> dict[str, frozenset[str]]:
    return {k: d for k, (_, d) in normalize_graph(dsk).items()}


# --- wire keys -------------------------------------------------------------------------


def test_wire_key_str_unchanged():
    assert wire_key("x") == "x"
    assert wire_key("") == ""


def test_wire_key_tuple_is_stable_repr():
    assert wire_key(("x", 0, 1)) == "('x', 0, 1)"
    assert wire_key(("x",)) == "('x',)"
    assert wire_key(("x", ("y", 2), "z")) == "('x', ('y', 2), 'z')"
    assert wire_key(("x", 0, 1)) == wire_key(("x", 0, 1))


def test_wire_key_integer_likes_match_plain_ints():
    class MyStr(str):
        pass

    class Index:
        def __index__(self):
            return 3

    assert wire_key(("x", True)) == wire_key(("x", 1))
    assert wire_key((MyStr("x"), Index())) == "('x', 3)"
    assert type(wire_key(MyStr("y"))) is str


@pytest.mark.parametrize("bad", [1, 1.5, b"x", None, (), (1, "x"), ("x", 1.5), frozenset()])
def test_wire_key_rejects_other_types(bad):
    with pytest.raises(GraphError, match="keys must be str or tuples") as info:
        wire_key(bad)
    assert repr(bad) in str(info.value)


def test_normalize_rejects_bad_key_and_colliding_keys():
    with pytest.raises(GraphError, match="keys must be str"):
        normalize_graph({1: 2})
    with pytest.raises(GraphError, match="same wire form"):
        normalize_graph({("x", 0): 1, "('x', 0)": 2})


# --- Ref and Task ----------------------------------------------------------------------


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps])
def test_ref_and_task_pickle_round_trip(dumps):
    task = Task(kw, (Ref("a"), [Ref("b"), 2], Task(inc, (Ref("c"),))), {"c": {"k": Ref("d")}})
    back = pickle.loads(dumps(task))
    assert back.func is kw
    assert back.args[0] == Ref("a")
    assert back.args[1] == [Ref("b"), 2]
    assert type(back.args[2]) is Task and back.args[2].args == (Ref("c"),)
    assert back.kwargs == {"c": {"k": Ref("d")}}
    assert pickle.loads(dumps(Ref("x"))) == Ref("x")


def test_ref_eq_hash_repr():
    assert Ref("a") == Ref("a") and Ref("a") != Ref("b")
    assert Ref("a") != "a"
    assert len({Ref("a"), Ref("a"), Ref("b")}) == 2
    assert repr(Ref("k")) == "Ref('k')"


def test_task_defaults_and_repr():
    t = Task(inc, [1])
    assert t.args == (1,) and t.kwargs is None
    assert Task(inc, (), {}).kwargs is None
    assert repr(Task(inc, (Ref("x"),))) == "Task(inc, (Ref('x'),))"
    assert "{'c': 1}" in repr(Task(kw, (1,), {"c": 1}))
    assert "functools.partial" in repr(Task(partial(inc), ()))


# --- normalize_graph ---------------------------------------------------------------------


def test_normalize_simple():
    graph = normalize_graph({"x": 1, "y": (inc, "x")})
    tx, dx = graph["x"]
    ty, dy = graph["y"]
    assert tx.func is identity and tx.args == (1,) and dx == frozenset()
    assert ty.func is inc and ty.args == (Ref("x"),) and dy == frozenset({"x"})


def test_normalize_alias_and_literal_list_with_keys():
    graph = normalize_graph({"a": 1, "b": ["a", 2], "y": "a"})
    tb, db = graph["b"]
    assert tb.func is identity and tb.args == ([Ref("a"), 2],) and db == {"a"}
    ty, dy = graph["y"]
    assert ty.func is identity and ty.args == (Ref("a"),) and dy == {"a"}


def test_normalize_nested_tasks_lists_dicts_tuples():
    dsk = {
        "a": 1,
        ("b", 0): 2,
        "c": (add, (inc, "a"), [("b", 0), (inc, ("b", 0))], {"k": "a"}, (1, "a")),
    }
    task, dc = normalize_graph(dsk)["c"]
    assert dc == {"a", "('b', 0)"}
    nested = task.args[0]
    assert type(nested) is Task and nested.func is inc and nested.args == (Ref("a"),)
    lst = task.args[1]
    assert lst[0] == Ref("('b', 0)") and type(lst[1]) is Task
    assert task.args[2] == {"k": Ref("a")}
    assert task.args[3] == (1, Ref("a"))


def test_normalize_key_lookalikes_stay_literal():
    dsk = {"a": 1, "b": (pack, "z", ("a", 0), "('a', 0)", ("a",))}
    task, deps = normalize_graph(dsk)["b"]
    assert deps == frozenset()
    assert task.args == ("z", ("a", 0), "('a', 0)", ("a",))
    assert get_sync(dsk, "b") == (("z", ("a", 0), "('a', 0)", ("a",)), {})


def test_normalize_unhashable_tuple_argument_is_literal():
    dsk = {"a": 1, "b": (identity, ([1], "a"))}
    assert get_sync(dsk, "b") == ([1], 1)


# --- get_sync ----------------------------------------------------------------------------


def test_get_sync_basic_and_key_structure():
    dsk = {"x": 1, "y": (inc, "x"), "z": (add, "x", "y")}
    assert get_sync(dsk, "y") == 2
    assert get_sync(dsk, ["x", ["y", "z"]]) == [1, [2, 3]]
    assert get_sync(dsk, []) == []


def test_get_sync_lists_of_keys_and_dicts():
    dsk = {f"a{i}": i for i in range(5)}
    dsk["s"] = (sum, [f"a{i}" for i in range(5)])
    dsk["d"] = (dict, {"total": "s", "first": "a0", "lit": "nokey"})
    assert get_sync(dsk, "d") == {"total": 10, "first": 0, "lit": "nokey"}


def test_get_sync_tuple_keys_aliases_and_kwargs():
    dsk = {
        ("x", 0): 1,
        ("x", 1): (inc, ("x", 0)),
        "alias": ("x", 1),
        "k": (partial(kw, c=5), "alias", (inc, "alias")),
    }
    assert get_sync(dsk, ("x", 1)) == 2
    assert get_sync(dsk, ["alias", "k"]) == [2, (2, 3, 5)]


def test_get_sync_missing_key_and_cycle():
    with pytest.raises(GraphError, match="'nope'"):
        get_sync({"x": 1}, "nope")
    with pytest.raises(CycleError):
        get_sync({"a": (inc, "b"), "b": (inc, "a")}, "a")


def test_get_sync_only_runs_needed_tasks():
    calls = []

    def record(name, *args):
        calls.append(name)
        return name

    dsk = {"a": (record, "A"), "b": (record, "B", "a"), "c": (record, "C")}
    assert get_sync(dsk, "b") == "B"
    assert sorted(calls) == ["A", "B"]


def test_get_sync_releases_intermediates():
    alive: set[int] = set()

    class Tracked:
        def __init__(self, n):
            self.n = n
            alive.add(n)

        def __del__(self):
            alive.discard(self.n)

    def step(prev):
        assert alive == {prev.n}  # older results were dropped once unused
        return Tracked(prev.n + 1)

    dsk = {"k0": (Tracked, 0)}
    for i in range(1, 20):
        dsk[f"k{i}"] = (step, f"k{i - 1}")
    assert get_sync(dsk, "k19").n == 19


def test_get_sync_long_chain():
    n = 30_000
    dsk = {"k0": 0}
    for i in range(1, n):
        dsk[f"k{i}"] = (inc, f"k{i - 1}")
    assert get_sync(dsk, f"k{n - 1}") == n - 1


# --- check_graph ---------------------------------------------------------------------------


def test_check_graph_ok_and_external():
    check_graph({"a": frozenset(), "b": frozenset({"a"})})
    check_graph({"b": frozenset({"a"})}, external={"a"})


def test_check_graph_missing_dependency():
    with pytest.raises(GraphError, match="task 'y' depends on 'z', which is not in the graph"):
        check_graph({"x": frozenset(), "y": frozenset({"x", "z"})})
    with pytest.raises(GraphError) as info:
        check_graph({"y": frozenset({"z"})}, external={"q"})
    assert not isinstance(info.value, CycleError)


def test_check_graph_self_loop():
    with pytest.raises(CycleError, match=r"cycle in graph: 'a' -> 'a'"):
        check_graph({"a": frozenset({"a"})})


def test_check_graph_longer_cycle_named_in_order():
    deps = {
        "start": frozenset({"c"}),
        "c": frozenset({"a"}),
        "a": frozenset({"b"}),
        "b": frozenset({"c", "ok"}),
        "ok": frozenset(),
    }
    with pytest.raises(CycleError, match=r"cycle in graph: 'a' -> 'b' -> 'c' -> 'a'$"):
        check_graph(deps)
    with pytest.raises(CycleError):
        order(deps)


def test_cycle_unreachable_from_outputs_is_found():
    deps = {"a": frozenset({"b"}), "b": frozenset({"a"}), "x": frozenset()}
    with pytest.raises(CycleError, match="'a' -> 'b' -> 'a'"):
        order(deps)


def test_long_chain_no_recursion():
    n = 200_000
    deps = chain(n)
    check_graph(deps)
    assert len(cull(deps, [f"k{n - 1}"])) == n
    prio = order(deps)
    assert all(prio[f"k{i}"] == i for i in range(0, n, 997))
    with pytest.raises(CycleError, match=r"^cycle in graph: 'k0' -> 'k199999' -> .* more") as info:
        check_graph({**deps, "k0": frozenset({f"k{n - 1}"})})
    assert len(str(info.value)) < 500


# --- cull ------------------------------------------------------------------------------------


def test_cull_keeps_exactly_needed():
    deps = {
        "a": frozenset(),
        "b": frozenset({"a"}),
        "c": frozenset({"b", "ext"}),
        "d": frozenset({"a"}),
        "e": frozenset(),
    }
    assert cull(deps, ["c"]) == {"a", "b", "c"}
    assert cull(deps, ["c", "d"]) == {"a", "b", "c", "d"}
    assert cull(deps, ["e", "missing"]) == {"e"}
    assert cull(deps, []) == set()


# --- order -------------------------------------------------------------------------------------


def tree_reduction(leaves: int) -> tuple[dict[str, frozenset[str]], dict[str, set[str]]]:
    """Binary sum tree over leaves a0..a{n-1}; returns deps and each node's subtree."""
    deps: dict[str, frozenset[str]] = {f"a{i}": frozenset() for i in range(leaves)}
    subtree = {k: {k} for k in deps}
    level = list(deps)
    depth = 0
    while len(level) > 1:
        depth += 1
        nxt = []
        for j in range(0, len(level), 2):
            name = f"s{depth}-{j // 2}"
            deps[name] = frozenset(level[j : j + 2])
            subtree[name] = {name}.union(*(subtree[c] for c in level[j : j + 2]))
            nxt.append(name)
        level = nxt
    return deps, subtree


def test_order_tree_reduction_finishes_branch_first():
    deps = {
        "a0": frozenset(),
        "a1": frozenset(),
        "a2": frozenset(),
        "a3": frozenset(),
        "s01": frozenset({"a0", "a1"}),
        "s23": frozenset({"a2", "a3"}),
        "total": frozenset({"s01", "s23"}),
    }
    prio = order(deps)
    assert sorted(deps, key=prio.get) == ["a0", "a1", "s01", "a2", "a3", "s23", "total"]


def test_order_every_subtree_is_contiguous():
    deps, subtree = tree_reduction(64)
    prio = order(deps)
    for keys in subtree.values():
        ranks = sorted(prio[k] for k in keys)
        assert ranks[-1] - ranks[0] == len(ranks) - 1


def test_order_natural_sort_of_outputs():
    deps = {wire_key(("x", i)): frozenset() for i in (10, 2, 1, 0, 11)}
    prio = order(deps)
    expected = [wire_key(("x", i)) for i in (0, 1, 2, 10, 11)]
    assert sorted(deps, key=prio.get) == expected


def test_order_finishes_each_output_before_next():
    deps = {}
    for i in range(12):
        deps[f"load-{i}"] = frozenset()
        deps[f"out-{i}"] = frozenset({f"load-{i}"})
    prio = order(deps)
    seq = sorted(deps, key=prio.get)
    assert seq[:4] == ["load-0", "out-0", "load-1", "out-1"]
    assert seq[-2:] == ["load-11", "out-11"]


def test_order_ignores_external_dependencies_and_is_deterministic():
    deps = {"a": frozenset({"ext"}), "b": frozenset({"a", "ext2"})}
    assert order(deps) == {"a": 0, "b": 1}
    deps, _ = tree_reduction(33)
    assert order(deps) == order(dict(reversed(list(deps.items()))))


# --- random DAGs ---------------------------------------------------------------------------


@st.composite
def random_dags(draw):
    """A list of dependency index lists; node i only depends on nodes < i."""
    n = draw(st.integers(min_value=1, max_value=30))
    return [
        sorted(draw(st.sets(st.integers(0, i - 1), max_size=4))) if i else [] for i in range(n)
    ]


def node_key(i: int):
    return ("n", i) if i % 3 == 0 else f"n{i}"


def combine(i, *values):
    return i * 7 + sum(values) % 1009


@SETTINGS
@given(random_dags())
def test_order_is_topological_permutation(dag):
    deps = {wire_key(node_key(i)): frozenset(wire_key(node_key(j)) for j in ds)
            for i, ds in enumerate(dag)}
    prio = order(deps)
    assert sorted(prio.values()) == list(range(len(deps)))
    for k, ds in deps.items():
        assert all(prio[d] < prio[k] for d in ds)
    check_graph(deps)


@SETTINGS
@given(random_dags(), st.data())
def test_get_sync_matches_recursive_evaluation(dag, data):
    dsk = {}
    for i, ds in enumerate(dag):
        keys = [node_key(j) for j in ds]
        style = i % 4
        if style == 0:
            dsk[node_key(i)] = (combine, i, *keys)
        elif style == 1:
            dsk[node_key(i)] = (combine, i, (sum, list(keys)))
        elif style == 2:
            dsk[node_key(i)] = (combine, i, (operator.getitem, {"v": (sum, keys)}, "v"))
        else:
            dsk[node_key(i)] = (combine, i, *[(identity, k) for k in keys])

    memo: dict[int, int] = {}

    def expected(i):
        if i not in memo:
            memo[i] = combine(i, sum(expected(j) for j in dag[i]))
        return memo[i]

    want = data.draw(st.lists(st.integers(0, len(dag) - 1), min_size=1, max_size=5))
    result = get_sync(dsk, [node_key(i) for i in want])
    assert result == [expected(i) for i in want]


# --- to_task and execute_task ------------------------------------------------------------


class Fut:
    def __init__(self, key):
        self.key = key


def convert(obj):
    return obj.key if type(obj) is Fut else None


def test_to_task_fast_path():
    task, deps = to_task(kw, (1, "a"), {"c": 2.5}, convert)
    assert task.args == (1, "a") and task.kwargs == {"c": 2.5} and deps == frozenset()
    task, deps = to_task(inc, [1], None, convert)
    assert task.args == (1,) and task.kwargs is None


def test_to_task_converts_references():
    f, g, h = Fut("f"), Fut("g"), Fut("h")
    task, deps = to_task(pack, (f, [1, (g, {"k": h})], {f}), {"c": [g]}, convert)
    assert deps == {"f", "g", "h"}
    assert task.args[0] == Ref("f")
    assert task.args[1] == [1, (Ref("g"), {"k": Ref("h")})]
    assert task.args[2] == {f}  # sets are left alone
    assert task.kwargs == {"c": [Ref("g")]}
    data = {"f": 10, "g": 20, "h": 30}
    assert execute_task(task, data) == ((10, [1, (20, {"k": 30})], {f}), {"c": [20]})


def test_to_task_keeps_tuples_as_data():
    task, deps = to_task(identity, ((inc, 1),), None, convert)
    assert deps == frozenset()
    assert execute_task(task, {}) == (inc, 1)


def test_execute_task_plain_and_nested():
    assert execute_task(Task(add, (1, 2, 3)), {}) == 6
    task = Task(kw, (Ref("a"), Task(inc, (Ref("a"),))), {"c": [Ref("b"), {"x": Ref("a")}]})
    assert execute_task(task, {"a": 1, "b": 2}) == (1, 2, [2, {"x": 1}])


def test_execute_task_does_not_mutate():
    def mutate(lst, d):
        lst.append("junk")
        d["junk"] = 1
        return len(lst)

    task = Task(mutate, ([Ref("a"), 1], {"k": Ref("a")}))
    before = copy.deepcopy((task.args, task.kwargs))
    assert execute_task(task, {"a": 0}) == 3
    assert execute_task(task, {"a": 0}) == 3
    assert (task.args, task.kwargs) == before
