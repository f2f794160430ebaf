"""The aggregate base: handlers, state fields, invariants, freezing, state hashes."""

from __future__ import annotations

import copy
import dataclasses
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import pytest

from evtools.aggregate import Aggregate, FrozenDict, FrozenList, FrozenSet, handles, invariant
from evtools.datagen import generate
from evtools.errors import (
    EvtoolsError,
    FrozenAggregateError,
    InputError,
    SchemaError,
    UsageError,
)
from evtools.orders import Order, order_registry
from evtools.registry import Registry
from evtools.rehydration import rehydrate


class Opened(msgspec.Struct, frozen=True):
    cart_id: int


class Added(msgspec.Struct, frozen=True):
    cart_id: int
    sku: int
    quantity: int
    price: Decimal = Decimal("1.00")


class Renamed(msgspec.Struct, frozen=True):
    cart_id: int
    name: str


class Cart(Aggregate):
    """The few lines a user writes."""

    id_field = "cart_id"
    limit: ClassVar[int] = 10  # not state

    cart_id: int | None = None
    name: str = ""
    items: dict[int, int] = msgspec.field(default_factory=dict)
    history: list[str] = []  # noqa: RUF012 - a literal default is copied per instance
    spent: Decimal = Decimal(0)
    _scratch: int = 0  # private: not state

    @handles(Opened)
    def _opened(self, e: Opened) -> None:
        self.cart_id = e.cart_id

    @handles(Added)
    def _added(self, e: Added) -> None:
        self.items[e.sku] = self.items.get(e.sku, 0) + e.quantity
        self.history.append(f"+{e.sku}")
        self.spent += e.price * e.quantity

    @invariant(after=(Added,))
    def positive(self) -> bool | str:
        return all(q > 0 for q in self.items.values()) or "a quantity is not positive"

    @invariant
    def under_limit(self) -> bool:
        return len(self.items) <= self.limit


def opened_cart() -> Cart:
    cart = Cart()
    cart.apply(Opened(7))
    cart.apply(Added(7, 1, 2))
    return cart


def test_state_fields_are_the_public_annotated_attributes() -> None:
    assert Cart.state_fields() == ("cart_id", "name", "items", "history", "spent")
    assert Cart.aggregate_type == "Cart"


def test_handlers_fold_events_and_mutable_defaults_are_per_instance() -> None:
    a, b = opened_cart(), Cart()
    assert a.items == {1: 2} and a.history == ["+1"]
    assert b.items == {} and b.history == []
    assert a.aggregate_id == 7


def test_unhandled_event_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="no handler for Renamed"):
        Cart().apply(Renamed(1, "x"))


def test_a_state_field_without_default_is_refused() -> None:
    class NoDefault(Aggregate):
        count: int

    with pytest.raises(UsageError, match="need a default"):
        NoDefault()


def test_handles_needs_event_classes() -> None:
    with pytest.raises(UsageError):
        handles()


class Strict(Aggregate):
    n: int = 0

    @handles(Opened)
    def _opened(self, e: Opened) -> None:
        self.n = e.cart_id

    @invariant
    def returns_false(self) -> bool:
        return self.n != 1

    @invariant
    def returns_message(self) -> str | bool:
        return "n is two" if self.n == 2 else True

    @invariant
    def raises(self) -> None:
        assert self.n != 3, "n is three"

    @invariant
    def holds_with_none(self) -> None:
        return None


@pytest.mark.parametrize(("n", "expected"), [
    (0, []),
    (1, ["returns_false does not hold"]),
    (2, ["returns_message: n is two"]),
    (3, ["raises: n is three"]),
])
def test_invariant_forms(n: int, expected: list[str]) -> None:
    agg = Strict()
    agg.apply(Opened(n))
    assert agg.check_invariants() == expected


def test_invariants_scoped_to_events() -> None:
    cart = opened_cart()
    cart.items[1] = -1
    assert cart.check_invariants(Opened(7)) == []  # `positive` only runs after Added
    assert cart.check_invariants(Added(7, 1, 1)) == ["positive: a quantity is not positive"]
    bound = cart.bound_invariants()
    assert [name for name, _, _ in bound[Added]] == ["positive", "under_limit"]
    assert [name for name, _, _ in bound[Opened]] == ["under_limit"]


def test_invariant_after_takes_one_class_or_several_but_only_classes() -> None:
    class Named(Cart):
        @invariant(after=Opened)  # one class, not in a tuple
        def named(self) -> bool:
            return bool(self.name)

    assert [n for n, _, _ in Named.invariant_table()[Opened]] == ["under_limit", "named"]
    assert "named" not in [n for n, _, _ in Named.invariant_table()[Added]]
    with pytest.raises(UsageError, match="takes event classes, not 'Renamed'"):
        invariant(after=("Renamed",))  # a name would never match an event


def test_class_tables_call_with_the_instance_first() -> None:
    class Renaming(Cart):
        @handles(Renamed)
        def _renamed(self, e: Renamed) -> None:
            self.name = e.name

        @handles(Opened)
        @staticmethod
        def _opened(e: Opened) -> None:  # static handlers are called without the instance
            Renaming.opened.append(e.cart_id)

        opened: ClassVar[list[int]] = []

    assert Renamed not in Cart.handler_table() and Renamed in Renaming.handler_table()
    cart = Renaming()
    Renaming.handler_table()[Opened](cart, Opened(3))
    Renaming.handler_table()[Renamed](cart, Renamed(3, "gifts"))
    assert (Renaming.opened, cart.name) == ([3], "gifts")
    Renaming._renamed = lambda self, e: setattr(self, "name", e.name.upper())  # type: ignore[method-assign]
    Renaming.handler_table()[Renamed](cart, Renamed(3, "gifts"))  # replaced later: used
    assert cart.name == "GIFTS"
    table = Cart.invariant_table()
    assert [(n, t) for n, _, t in table[Added]] == [("positive", False), ("under_limit", False)]
    cart.items[1] = -1
    assert [check(cart) for _, check, _ in table[Added]] == ["a quantity is not positive", True]


def test_an_invariant_may_take_the_event_just_applied() -> None:
    class Checked(Cart):
        @invariant(after=(Added,))
        def small_additions(self, e: Added) -> bool | str:
            return e.quantity < 5 or f"{e.quantity} of sku {e.sku} at once"

    cart = Checked()
    cart.apply(Opened(1))
    big = Added(1, 3, 9)
    cart.apply(big)
    assert cart.check_invariants(big) == ["small_additions: 9 of sku 3 at once"]
    assert cart.check_invariants() == []  # needs the event: skipped without one
    assert [t for _, _, t in cart.bound_invariants()[Added]] == [False, False, True]


def test_frozen_aggregate_refuses_every_change() -> None:
    cart = opened_cart().freeze()
    assert cart.frozen and isinstance(cart, Cart)
    with pytest.raises(FrozenAggregateError, match=r"cannot set 'name'.*frozen.*thaw\(\)"):
        cart.name = "x"
    with pytest.raises(FrozenAggregateError, match="cannot delete"):
        del cart.name
    with pytest.raises(FrozenAggregateError, match="cannot apply an event"):
        cart.apply(Added(7, 2, 1))
    with pytest.raises(FrozenAggregateError):
        cart.items[9] = 1
    with pytest.raises(FrozenAggregateError):
        cart.items.pop(1)
    with pytest.raises(FrozenAggregateError):
        cart.history.append("x")
    with pytest.raises(FrozenAggregateError):
        cart.history += ["x"]
    assert isinstance(cart.items, FrozenDict) and isinstance(cart.history, FrozenList)
    assert cart.items == {1: 2} and cart.history == ["+1"]  # still readable
    assert "frozen" in repr(cart)


def test_frozen_error_is_in_the_tree_and_an_attribute_error() -> None:
    cart = opened_cart().freeze()
    with pytest.raises(EvtoolsError):
        cart.name = "x"
    with pytest.raises(AttributeError):
        cart.name = "x"


def test_freeze_is_idempotent_and_thaw_gives_a_mutable_copy() -> None:
    cart = opened_cart()
    assert cart.freeze().freeze() is cart
    copy = cart.thaw()
    assert not copy.frozen and copy == cart
    copy.apply(Added(7, 1, 1))
    assert copy.items == {1: 3} and cart.items == {1: 2}


def test_state_hash_follows_the_state() -> None:
    a, b = opened_cart(), opened_cart()
    assert a.state_hash() == b.state_hash()
    assert a.state_hash().startswith("sha256:")
    b.apply(Added(7, 1, 1))
    assert a.state_hash() != b.state_hash()
    assert a.freeze().state_hash() == opened_cart().state_hash()  # freezing changes nothing


def test_to_state_is_exact_and_from_state_inverts_it() -> None:
    cart = opened_cart()
    cart.apply(Added(7, 2**60, 1, Decimal("0.10")))
    state = cart.to_state()
    assert state["items"] == {"1": 2, str(2**60): 1}
    assert state["spent"] == Decimal("2.10") and isinstance(state["spent"], Decimal)
    again = Cart.from_state(state)
    assert again == cart and again.items[2**60] == 1
    assert Cart.from_state_bytes(cart.state_bytes()) == cart


def test_from_state_rejects_what_does_not_fit() -> None:
    with pytest.raises(SchemaError):
        Cart.from_state({"items": {"1": "two"}})
    with pytest.raises(SchemaError):
        Cart.from_state({"unknown": 1})
    with pytest.raises(SchemaError, match=r"^state does not fit Cart: map key: Expected `int`"
                       r", got `str` \(type CartState v1, at /items\)$"):
        Cart.from_state({"items": {"x": 1}})  # the map, not the whole state


def test_subclasses_inherit_and_override_handlers() -> None:
    class NamedCart(Cart):
        @handles(Renamed)
        def _renamed(self, e: Renamed) -> None:
            self.name = e.name

        @handles(Opened)
        def _opened(self, e: Opened) -> None:
            self.cart_id = e.cart_id * 10

    cart = NamedCart()
    cart.apply(Opened(1))
    cart.apply(Renamed(1, "mine"))
    assert (cart.cart_id, cart.name) == (10, "mine")
    assert NamedCart.aggregate_type == "NamedCart"
    assert NamedCart.state_fields() == Cart.state_fields()
    frozen = cart.freeze()
    assert isinstance(frozen, NamedCart) and frozen.name == "mine"


class _Audited(Cart):
    """A user __setattr__: construction must go through it, field by field."""

    def __setattr__(self, name: str, value: object) -> None:
        self.__dict__.setdefault("_writes", []).append(name)
        super().__setattr__(name, value)


@pytest.mark.parametrize("cls", [Cart, _Audited])
def test_construction_and_freeze_with_and_without_a_user_setattr(cls: type[Cart]) -> None:
    from collections import OrderedDict, defaultdict

    cart = cls()
    assert cart.to_state() == Cart().to_state() and cart.version == -1
    assert cart.items == {} and cart.items is not cls().items  # a factory, per instance
    if cls is _Audited:
        assert set(Cart.state_fields()) <= set(cart.__dict__["_writes"])
    cart.apply(Opened(7))
    cart.items = defaultdict(int, {1: 2})  # subclasses of dict and list are frozen too
    cart.history = OrderedDict(a=[1, [2]])  # type: ignore[assignment]
    cart._scratch_list = [1]  # type: ignore[attr-defined]  # not state: left alone
    cart.freeze()
    assert isinstance(cart.items, FrozenDict) and cart.items == {1: 2}
    assert isinstance(cart.history, FrozenDict)
    inner = cart.history["a"]  # type: ignore[call-overload]
    assert isinstance(inner, FrozenList) and isinstance(inner[1], FrozenList)
    cart._scratch_list.append(2)  # type: ignore[attr-defined]
    with pytest.raises(FrozenAggregateError):
        cart.items[1] = 3


# -- sets, value objects, copies, pickles ----------------------------------------------------

class Place(msgspec.Struct, frozen=True):
    city: str


class Draft(msgspec.Struct):
    """A value object that is not frozen: a frozen aggregate must not hold one."""

    city: str


class Tagged(msgspec.Struct, frozen=True):
    account_id: int
    tag: str


class Account(Aggregate):
    """Module level, so that pickle can name it."""

    id_field = "account_id"

    account_id: int | None = None
    owner: str | None = None
    balance: int = 0
    amounts: list[Decimal] = []  # noqa: RUF012 - a literal default is copied per instance
    tags: set[str] = set()  # noqa: RUF012 - a literal default is copied per instance
    groups: dict[str, set[int]] = {}  # noqa: RUF012 - a literal default is copied per instance
    places: dict[str, Any] = {}  # noqa: RUF012 - a literal default is copied per instance
    home: Any = None

    @handles(Tagged)
    def _tagged(self, e: Tagged) -> None:
        self.account_id = e.account_id
        self.tags.add(e.tag)


class _AuditedAccount(Account):
    """A user __setattr__: freeze goes the slow way, field by field."""

    def __setattr__(self, name: str, value: object) -> None:
        super().__setattr__(name, value)


def tagged_account(cls: type[Account] = Account) -> Account:
    account = cls()
    account.apply(Tagged(5, "a"))
    account.apply(Tagged(5, "b"))
    account.amounts.append(Decimal("1.50"))
    account.places["home"] = Place("Oslo")
    account.groups["g"] = {7, 9}  # a set inside a dict
    account.home = Place("Bergen")
    account._version, account._stream = 1, "account-5"
    return account


MUTATIONS: list[Callable[[Any], Any]] = [
    lambda s: s.add("z"), lambda s: s.discard("a"), lambda s: s.remove("a"),
    lambda s: s.pop(), lambda s: s.clear(), lambda s: s.update({"z"}),
    lambda s: s.difference_update({"a"}), lambda s: s.intersection_update({"a"}),
    lambda s: s.symmetric_difference_update({"a"}), lambda s: s.__ior__({"z"}),
    lambda s: s.__iand__({"a"}), lambda s: s.__isub__({"a"}), lambda s: s.__ixor__({"a"}),
]


@pytest.mark.parametrize("mutate", MUTATIONS)
def test_a_frozen_set_refuses_every_change_like_dicts_and_lists(
        mutate: Callable[[Any], Any]) -> None:
    account = tagged_account().freeze()
    for members in (account.tags, account.groups["g"]):
        assert isinstance(members, FrozenSet)
        with pytest.raises(FrozenAggregateError, match=r"this set belongs to a frozen .*thaw"):
            mutate(members)
    assert account.tags == {"a", "b"} and account.groups["g"] == {7, 9}


def test_a_frozen_set_is_a_frozenset_that_copies_and_pickles_as_itself() -> None:
    tags = tagged_account().freeze().tags
    assert tags == {"a", "b"} == frozenset({"a", "b"})
    assert hash(tags) == hash(frozenset({"a", "b"})) and "a" in tags
    assert isinstance(tags | {"c"}, frozenset)  # a new value: not the aggregate's
    for again in (copy.copy(tags), copy.deepcopy(tags), pickle.loads(pickle.dumps(tags))):
        assert type(again) is FrozenSet and again == tags


@pytest.mark.parametrize("cls", [Account, _AuditedAccount])
def test_freeze_refuses_a_value_object_that_is_not_frozen(cls: type[Account]) -> None:
    account = tagged_account(cls)
    account.home = Draft("Rome")
    with pytest.raises(UsageError, match=r"/home holds a Draft.*frozen=True") as info:
        account.freeze()
    assert info.value.context.path == "/home"
    # all or nothing: the aggregate is left as it was, mutable
    assert not account.frozen and type(account.places) is dict
    account.home = Place("Rome")
    account.places["away"] = [Place("Oslo"), Draft("Rome")]  # inside a container too
    with pytest.raises(UsageError, match=r"/places/away/1 holds a Draft"):
        account.freeze()
    del account.places["away"]
    assert account.freeze().home == Place("Rome")  # frozen Structs are fine


def test_order_value_objects_are_frozen_structs() -> None:
    result = rehydrate(generate(40, n_streams=1, seed=3), order_registry(), Order)
    assert result.ok and result.aggregate.frozen and result.aggregate.lines


@pytest.mark.parametrize("duplicate", [copy.copy, copy.deepcopy])
def test_copies_of_a_frozen_aggregate_stay_frozen(duplicate: Callable[[Any], Any]) -> None:
    account = tagged_account().freeze()
    again = duplicate(account)
    assert again.frozen and again == account and type(again) is type(account)
    assert (again.version, again.stream) == (1, "account-5")
    assert isinstance(again.amounts, FrozenList) and isinstance(again.places, FrozenDict)
    assert isinstance(again.tags, FrozenSet) and isinstance(again.groups["g"], FrozenSet)
    with pytest.raises(FrozenAggregateError):
        again.amounts.append(Decimal(1))
    with pytest.raises(FrozenAggregateError):
        again.places["x"] = 1
    with pytest.raises(FrozenAggregateError):
        again.balance = 1


def test_frozen_containers_copy_as_frozen_containers() -> None:
    frozen = FrozenDict({"a": FrozenList([1, FrozenDict({"b": 2})])})
    for again in (copy.copy(frozen), copy.deepcopy(frozen), pickle.loads(pickle.dumps(frozen))):
        assert type(again) is FrozenDict and again == frozen
        assert type(again["a"]) is FrozenList and type(again["a"][1]) is FrozenDict


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_frozen_aggregate_pickles_to_an_equal_frozen_aggregate(protocol: int) -> None:
    account = tagged_account().freeze()
    again = pickle.loads(pickle.dumps(account, protocol=protocol))
    assert again == account and again.frozen and type(again) is type(account)
    assert (again.version, again.stream, again.aggregate_id) == (1, "account-5", 5)
    with pytest.raises(FrozenAggregateError):
        again.tags.add("z")
    mutable = pickle.loads(pickle.dumps(account.thaw(), protocol=protocol))
    assert not mutable.frozen and mutable == account


def test_a_rehydration_result_pickles() -> None:
    result = rehydrate(generate(40, n_streams=1, seed=3), order_registry(), Order)
    again = pickle.loads(pickle.dumps(result))
    assert again.aggregate == result.aggregate and again.aggregate.frozen
    assert again.version == result.version and again.violations == result.violations


# -- invariants by the name they are assigned to ---------------------------------------------

def _never_negative(self: Account) -> bool | str:
    return self.balance >= 0 or f"balance {self.balance}"


def _unwrapped(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A decorator that does not use functools.wraps: its function is named `wrapper`."""
    def wrapper(self: Any) -> Any:
        return fn(self)

    return wrapper


class Guarded(Account):
    positive = invariant(_never_negative)

    @invariant
    @_unwrapped
    def few_tags(self) -> bool:
        return len(self.tags) < 3


def test_an_invariant_is_known_by_the_name_it_is_assigned_to() -> None:
    account = Guarded()
    account.apply(Tagged(1, "a"))
    assert account.check_invariants() == []
    account.balance = -2
    account.tags.update({"b", "c"})
    assert account.check_invariants() == ["positive: balance -2", "few_tags does not hold"]
    table = Guarded.invariant_table()
    assert [(n, check(account)) for n, check, _ in table[Tagged]] == [
        ("positive", "balance -2"), ("few_tags", False)]
    assert [n for n, _, _ in account.bound_invariants()[None]] == ["positive", "few_tags"]


# -- snapshots: the state must restore as it is, and whole -----------------------------------

def unordered(*members: int) -> set[int]:
    """A set holding ``members``, built in this order (ints hash as themselves, so the
    order a set lists them in is the same in every run)."""
    out: set[int] = set()
    for m in members:
        out.add(m)
    return out


def test_equal_sets_listed_in_another_order_are_equal_states() -> None:
    a, b = tagged_account(), tagged_account()
    a.groups["g"], b.groups["g"] = unordered(0, 8), unordered(8, 0)
    assert list(a.groups["g"]) != list(b.groups["g"])  # iterated in another order...
    assert a.state_bytes() == b.state_bytes()  # ...written in order: equal states, equal hashes
    assert a.state_hash() == b.state_hash()
    assert a == b and a.freeze() == b.thaw()
    b.groups["g"] = {0, 9}
    assert a != b


def test_snapshot_state_bytes_are_the_state_bytes_when_the_state_fits() -> None:
    account = tagged_account()
    account.groups["g"] = unordered(3, 27)
    restored = Account.from_state_bytes(account.state_bytes())
    assert list(account.groups["g"]) == [27, 3]  # iterated out of order, written in order
    assert b'"g":[3,27]' in account.state_bytes() and restored == account
    assert account.snapshot_state_bytes() == account.state_bytes()
    assert Account.from_state_bytes(account.snapshot_state_bytes()) == account
    assert opened_cart().snapshot_state_bytes() == opened_cart().state_bytes()


def test_snapshot_state_bytes_refuse_a_value_that_would_not_restore() -> None:
    account = tagged_account()
    account.owner = 12345  # type: ignore[assignment]
    with pytest.raises(SchemaError, match=r"Account 5 cannot go into a snapshot.*/owner") as info:
        account.snapshot_state_bytes()
    assert info.value.context.path == "/owner"
    assert info.value.context.stream == "account-5"
    account.state_bytes()  # still hashes: the hot path is unchanged


def test_snapshot_state_bytes_refuse_a_value_that_would_restore_as_another() -> None:
    account = tagged_account()
    account.amounts.extend([Decimal(2), 2.5])  # type: ignore[list-item]
    with pytest.raises(SchemaError, match=r"/amounts/2 .*written as 2.5 but restores as "
                                          r"\"2.5\"") as info:
        account.snapshot_state_bytes()
    assert info.value.context.path == "/amounts/2"
    assert info.value.context.event_type == "AccountState"
    cart = opened_cart()
    cart.spent = 1.0  # type: ignore[assignment]
    with pytest.raises(SchemaError, match="/spent"):
        cart.snapshot_state_bytes()


def test_the_state_holds_every_field_and_decoding_requires_them() -> None:
    state = Account().to_state()
    assert list(state) == list(Account.state_fields()) and state["account_id"] is None
    assert set(msgspec.json.decode(Account().state_bytes())) == set(Account.state_fields())
    with pytest.raises(SchemaError, match="missing required field `account_id`") as info:
        Account.from_state_bytes(b'{"balance": 1}')
    assert info.value.context.path == "/account_id"
    with pytest.raises(SchemaError, match="missing required field"):
        Account.from_state({"balance": 1})
    with pytest.raises(SchemaError, match="missing required field"):
        Cart.from_state({})


def test_upcasters_of_a_state_must_produce_every_field() -> None:
    class AccountV2(Account):
        state_version = 2

    whole = AccountV2().to_state()
    for upcast, ok in [(lambda state: {**whole, **state}, True), (lambda state: state, False)]:
        registry = Registry()
        AccountV2.register_state(registry)
        registry.add_upcaster(AccountV2.state_type_name(), 1, upcast)
        if ok:
            struct = registry.decode_payload("AccountV2State", 1, b'{"balance":3}')
            assert AccountV2.from_state(struct).balance == 3
            continue
        with pytest.raises(InputError, match="missing required field `account_id`"):
            registry.decode_payload("AccountV2State", 1, b'{"balance":3}')


# -- from a user's walk: freezing, thawing, hashing what users put in a state ----------------

class _Flag(Enum):
    RED = "red"
    BLUE = "blue"
    GREEN = "green"


class _Point(msgspec.Struct, frozen=True):
    x: int


class _Kinds(Aggregate):
    flags: set[_Flag] = set()  # noqa: RUF012 - a literal default is copied per instance
    points: set[_Point] = set()  # noqa: RUF012 - a literal default is copied per instance
    mixed: set[int | str] = set()  # noqa: RUF012 - a literal default is copied per instance
    names: set[str] = set()  # noqa: RUF012 - a literal default is copied per instance
    anything: Any = None
    pairs: tuple[Any, ...] = ()
    ratio: float | None = None


def _filled() -> _Kinds:
    kinds = _Kinds()
    kinds.flags, kinds.points = set(_Flag), {_Point(i) for i in range(8)}
    kinds.mixed, kinds.names = {1, "a", 2, "b", 30}, {"q", "w", "e"}
    kinds.anything = {"tags": {"x", "y", "z", "w"}, "at": Decimal("1.10"), 7: [1]}
    return kinds


_HASH_SCRIPT = """
import sys; sys.path.insert(0, {root!r})
from tests.test_aggregate import _filled
print(_filled().state_hash(), _filled().snapshot_state_bytes().decode())
"""


def test_state_hash_is_the_same_in_every_process() -> None:
    """Sets of enums, of value objects, of mixed types and sets under ``Any`` were written
    in hash order (``<`` cannot order them), so the hash changed with PYTHONHASHSEED."""
    root = str(Path(__file__).resolve().parents[1])
    outputs = {subprocess.run([sys.executable, "-c", _HASH_SCRIPT.format(root=root)],
                              env={**os.environ, "PYTHONHASHSEED": str(seed)}, check=True,
                              capture_output=True, text=True).stdout
               for seed in range(6)}
    assert len(outputs) == 1
    state = msgspec.json.decode(_filled().state_bytes())
    assert state["flags"] == ["blue", "green", "red"] and state["names"] == ["e", "q", "w"]
    assert state["points"] == [{"x": i} for i in range(8)]
    assert state["anything"]["tags"] == ["w", "x", "y", "z"]
    assert _filled() == _Kinds.from_state_bytes(_filled().snapshot_state_bytes())


def test_thaw_gives_the_values_themselves_in_mutable_containers() -> None:
    kinds = _filled().freeze()
    thawed = kinds.thaw()
    assert thawed.anything == {"tags": {"x", "y", "z", "w"}, "at": Decimal("1.10"), 7: [1]}
    assert type(thawed.anything["at"]) is Decimal  # had been the str "1.10", 7 a str key
    assert type(thawed.anything["tags"]) is set and type(thawed.flags) is set
    thawed.anything["tags"].add("v")
    thawed.anything[7].append(2)
    thawed.flags.discard(_Flag.RED)
    assert kinds.anything["tags"] == {"x", "y", "z", "w"} and kinds.anything[7] == [1]
    assert _Flag.RED in kinds.flags and kinds.frozen and not thawed.frozen


def test_a_tuple_in_the_state_is_frozen_inside() -> None:
    kinds = _Kinds()
    kinds.pairs = ([1], {"a": [2]}, {3}, (4, [5]))
    kinds.anything = [("k", [6])]
    kinds.freeze()
    for mutate in (lambda: kinds.pairs[0].append(9), lambda: kinds.pairs[1]["a"].append(9),
                   lambda: kinds.pairs[2].add(9), lambda: kinds.pairs[3][1].append(9),
                   lambda: kinds.anything[0][1].append(9)):
        with pytest.raises(FrozenAggregateError):
            mutate()
    assert kinds.pairs == ([1], {"a": [2]}, {3}, (4, [5])) and type(kinds.pairs) is tuple
    thawed = kinds.thaw()
    thawed.pairs[3][1].append(9)
    assert type(thawed.pairs[0]) is list and kinds.pairs[3][1] == [5]
    plain = _Kinds()
    plain.pairs = (1, "a")
    assert plain.freeze().pairs is not None and plain.pairs == (1, "a")


def test_a_mutable_value_object_inside_a_tuple_is_refused() -> None:
    class Loose(msgspec.Struct):
        x: int

    kinds = _Kinds()
    kinds.pairs = (1, Loose(1))
    with pytest.raises(UsageError, match=r"/pairs/1 holds a .*Loose, a msgspec.Struct that is "
                                         r"not frozen") as info:
        kinds.freeze()
    assert info.value.context.path == "/pairs/1"


def test_two_handlers_for_one_class_in_one_body_are_refused() -> None:
    with pytest.raises(UsageError, match=r"Twice has two handlers for Opened: _a and _b"):
        class Twice(Aggregate):
            n: int = 0

            @handles(Opened)
            def _a(self, e: Opened) -> None:
                self.n += 1

            @handles(Opened)
            def _b(self, e: Opened) -> None:  # had silently replaced _a
                self.n += 100

    class Base(Aggregate):
        n: int = 0

        @handles(Opened)
        def _a(self, e: Opened) -> None:
            self.n += 1

        _alias = _a  # the same function under two names: one handler

    class Child(Base):
        @handles(Opened)
        def _b(self, e: Opened) -> None:  # a subclass overrides
            self.n += 100

    child = Child()
    child.apply(Opened(1))
    assert child.n == 100


def test_a_snapshot_refuses_a_nan_it_would_restore_as_none() -> None:
    kinds = _Kinds()
    kinds.ratio = float("nan")
    with pytest.raises(SchemaError, match=r"/ratio .*nan is written as null") as info:
        kinds.snapshot_state_bytes()
    assert info.value.context.path == "/ratio"
    kinds.ratio, kinds.anything = None, {"a": [float("inf")]}
    with pytest.raises(SchemaError, match=r"/anything/a/0 .*inf is written as null"):
        kinds.snapshot_state_bytes()
    kinds.anything = {"a": None}
    assert kinds.snapshot_state_bytes() == kinds.state_bytes()


def test_a_state_json_cannot_hold_is_a_schema_error_naming_the_field() -> None:
    kinds = _Kinds()
    kinds.anything = {True: 1}
    with pytest.raises(SchemaError, match=r"cannot be written as JSON.* /anything") as info:
        kinds.state_hash()
    assert info.value.context.path == "/anything"
    kinds.anything = object()
    with pytest.raises(SchemaError, match=r"/anything"):
        kinds.to_state()


# -- from a review: what a rebuilt aggregate must keep, refuse, or say ---------------------

class Enqueued(msgspec.Struct, frozen=True):
    job: str


class Dequeued(msgspec.Struct, frozen=True):
    pass


class Queue(Aggregate):
    pending: dict[str, int] = {}  # noqa: RUF012 - insertion order is the queue's order
    done: list[str] = []  # noqa: RUF012 - a literal default is copied per instance

    @handles(Enqueued)
    def _enqueued(self, e: Enqueued) -> None:
        self.pending[e.job] = len(self.pending)

    @handles(Dequeued)
    def _dequeued(self, e: Dequeued) -> None:
        first = next(iter(self.pending))
        del self.pending[first]
        self.done.append(first)


def _queue_events() -> tuple[Registry, list[Any]]:
    from evtools.events import RawEvent

    reg = Registry()
    reg.register(Enqueued, name="Enqueued")
    reg.register(Dequeued, name="Dequeued")
    payloads = [("Enqueued", b'{"job":"zeta"}'), ("Enqueued", b'{"job":"alpha"}'),
                ("Dequeued", b"{}")]
    return reg, [RawEvent(stream="q", version=i, type=t, data=d, id=f"e{i}")
                 for i, (t, d) in enumerate(payloads)]


def test_a_snapshot_keeps_the_order_of_a_map_a_handler_depends_on() -> None:
    """The state was written with sorted keys: a snapshot restored {alpha, zeta}, so the
    rebuild from it dequeued alpha where the replay from zero dequeued zeta, and
    verify_snapshot saw nothing (the maps compared equal)."""
    from evtools.rehydration import take_snapshot

    reg, events = _queue_events()
    snap = take_snapshot(rehydrate(events[:2], reg, Queue).aggregate)
    assert bytes(snap.state) == b'{"pending":{"zeta":0,"alpha":1},"done":[]}'
    replay = rehydrate(events, reg, Queue).aggregate
    from_snapshot = rehydrate(events[1:], reg, Queue, snapshot=snap).aggregate
    assert replay.done == from_snapshot.done == ["zeta"]
    assert replay == from_snapshot


def test_verify_snapshot_reports_a_snapshot_whose_maps_restore_in_another_order() -> None:
    from evtools.rehydration import Snapshot, take_snapshot

    reg, events = _queue_events()
    snap = take_snapshot(rehydrate(events[:2], reg, Queue).aggregate)
    reordered = b'{"pending":{"alpha":1,"zeta":0},"done":[]}'  # as sorted keys wrote it
    from evtools.aggregate import state_hash_of

    old = msgspec.structs.replace(snap, state=msgspec.Raw(reordered),
                                  state_hash=state_hash_of(reordered))
    assert isinstance(old, Snapshot) and old.hash_ok()
    verified = rehydrate(events, reg, Queue, snapshot=old, verify_snapshot=True,
                         policy="audit")
    assert [v.kind for v in verified.violations] == ["snapshot_conflict"]
    assert Queue.from_state_bytes(reordered) != Queue.from_state_bytes(bytes(snap.state))


def test_state_bytes_keep_field_and_insertion_order_and_sort_set_members() -> None:
    account = tagged_account()
    account.places = {"z": 1, "a": 2}
    account.tags = {"b", "a", "c"}
    state = account.state_bytes()
    assert state.index(b'"account_id"') < state.index(b'"owner"') < state.index(b'"home"')
    assert b'"places":{"z":1,"a":2}' in state and b'"tags":["a","b","c"]' in state
    assert Account.from_state_bytes(account.snapshot_state_bytes()) == account


class _Put(msgspec.Struct, frozen=True):
    q: int


class _Typo(Aggregate):
    items: int = 0

    @handles(_Put)
    def _put(self, e: _Put) -> None:
        self.itmes = self.items + e.q  # a typo: no state field
        self._seen = e.q  # private: not state, allowed


def test_an_attribute_no_state_field_declares_is_refused_not_left_out() -> None:
    from evtools.events import RawEvent
    from evtools.rehydration import take_snapshot

    reg = Registry()
    reg.register(_Put, name="Put")
    events = [RawEvent(stream="c", version=i, type="Put", data=b'{"q":2}', id=f"e{i}")
              for i in range(2)]
    with pytest.raises(UsageError, match=r"^cannot freeze _Typo: 'itmes' was set on it but "
                                         r"is no state field, so it would be left out of its "
                                         r"state, its hash and its snapshots; declare") as e:
        rehydrate(events, reg, _Typo)
    assert e.value.context.stream == "c" and e.value.context.version == 1
    unfrozen = rehydrate(events, reg, _Typo, freeze=False).aggregate
    with pytest.raises(UsageError, match=r"^cannot take a snapshot of _Typo: 'itmes'"):
        take_snapshot(unfrozen)
    ok = _Typo()
    ok._seen = 1
    assert ok.freeze().frozen  # a private attribute is not state


class _NoSuchId(Aggregate):
    id_field = "cart_id"
    cart: int | None = None  # the field is `cart`: id_field names nothing


def test_an_id_field_naming_no_state_field_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"^_NoSuchId.id_field is 'cart_id', which is not one "
                                         r"of its state fields \(cart\)"):
        _NoSuchId()


def test_an_id_field_that_is_a_property_of_the_class_is_accepted() -> None:
    class Computed(Aggregate):
        id_field = "key"
        number: int = 0

        @property
        def key(self) -> str:
            return f"n-{self.number}"

    assert Computed().aggregate_id == "n-0"


@dataclasses.dataclass
class _MutableBox:
    n: int


@dataclasses.dataclass(frozen=True)
class _FrozenBox:
    n: int


class _IdentityPoint(msgspec.Struct, eq=False):  # hashed by identity: fits in a set
    x: int


class _Holder(Aggregate):
    box: Any = None
    buf: Any = None
    points: set[Any] = set()  # noqa: RUF012 - a literal default is copied per instance


@pytest.mark.parametrize(("field", "value", "message"), [
    ("box", _MutableBox(1), r"/box holds a _MutableBox, a dataclass that is not frozen, so it "
                            r"could still be changed; declare _MutableBox with "
                            r"`@dataclass\(frozen=True\)`"),
    ("box", [_MutableBox(1)], r"/box/0 holds a _MutableBox, a dataclass that is not frozen"),
    ("buf", bytearray(b"ab"), r"/buf holds a bytearray, a mutable value, so it could still be "
                              r"changed; hold bytes instead"),
    ("points", {_IdentityPoint(1)}, r"holds a _IdentityPoint, a msgspec.Struct that is not "
                                    r"frozen"),
    ("points", {(1, _IdentityPoint(1))}, r"holds a _IdentityPoint, a msgspec.Struct"),
])
def test_freeze_refuses_every_value_that_would_stay_mutable(field: str, value: Any,
                                                            message: str) -> None:
    holder = _Holder()
    setattr(holder, field, value)
    with pytest.raises(UsageError, match=message):
        holder.freeze()
    assert not holder.frozen


def test_freeze_takes_frozen_dataclasses_bytes_and_sets_of_frozen_values() -> None:
    holder = _Holder()
    holder.box, holder.buf, holder.points = _FrozenBox(1), b"ab", {(1, "a"), _FrozenBox(2)}
    assert holder.freeze().frozen and holder.box == _FrozenBox(1)


def test_a_frozen_dict_or_list_cannot_be_filled_again_through_init() -> None:
    account = tagged_account()
    account.places = {"a": [1]}
    account.freeze()
    with pytest.raises(FrozenAggregateError, match="this dict belongs to a frozen"):
        account.places.__init__({"z": [1]})  # type: ignore[misc]
    with pytest.raises(FrozenAggregateError, match="this list belongs to a frozen"):
        account.places["a"].__init__([7])  # type: ignore[misc]
    assert account.places == {"a": [1]}
    assert FrozenDict({"a": 1}) == {"a": 1} and FrozenList([1]) == [1]  # built once: fine
