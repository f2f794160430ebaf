"""The aggregate base: handlers, state fields, invariants, freezing, state hashes."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

import msgspec
import pytest

from evtools.aggregate import Aggregate, FrozenDict, FrozenList, handles, invariant
from evtools.errors import EvtoolsError, FrozenAggregateError, SchemaError, UsageError


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
