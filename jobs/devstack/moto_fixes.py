"""Fixes to moto's DynamoDB that the emulator applies: costs real DynamoDB does not have, which grow with the
table and made a local stack left running slower and slower. Behaviour is unchanged; only the work is.

- TransactWriteItems: moto deep-copies every table a transaction touches, to roll back if it fails (a
  240-frame job's writes copied the whole table dozens of times). Here only the items the transaction
  names are copied, and restored if it fails.
- Query: moto walks every item of the table for each one. On the table's own key it now walks that
  partition only; on an index, the items whose index key has the queried value, from a map of the
  table by that attribute that is built once per table state (every write makes the next query rebuild
  it), so the sweeper's and the listings' back-to-back queries over an index's shards pay one walk.
- Dispatch: moto's server lists its ~200 service packages on disk (a listdir and a stat each) for every
  request to find the backend for a host; the list and each host's backend are kept after the first look.
- Responses: moto serializes every DynamoDB response by walking botocore's model of its output, shape by
  shape (about a fifth of the emulator's CPU in the bench, most of it on the items an UpdateItem returns).
  The data-plane calls' results are DynamoDB's JSON already: their output's members are written out with
  `json.dumps`, which a client parses to the same response (`tests/integration/test_moto_fixes.py`).
- SQS: moto checks each message it delivers against the queue's retention period by computing every
  attribute of the queue, its message counts among them (a walk of the queue, three times a message); it
  reads the retention period alone now. It also counted every queue's messages for each message sent (the
  queue's attributes, read for one setting), asking each message the time through datetime: each count reads
  the clock once now.
- UpdateItem: moto parsed each UpdateExpression twice a call, counted its clauses and checked its paths for
  overlaps in time growing with the square of its actions, and each of the ten traversers of its validation
  rebuilt its map of node types for every node it visited (13 ms of CPU a call on the job item, against 4 for
  a two-attribute update). Parsed trees are kept by expression (read-only: moto deep-copies a tree before
  changing it), their clauses counted once and their paths checked once per set of attribute names (a tree
  that fails either is checked on every call, as before), the traversers' maps kept, and a tree's deep copy
  made without copy's generic machinery (from its pickled form, for a kept tree); a tree's check that no path
  names a key attribute runs once per set of names, like the overlap check; the tokens of each
  ConditionExpression are kept too (moto lexed it twice a call). A new item's size is summed once, not once an
  attribute added (the same limit, checked), and an update's sums skip moto's detours (lists built of the
  item's names and values, four type tests a value).
- Errors: a `#name` or `:value` a request does not define, and a condition moto's parser cannot read, crashed
  moto (a 500 from the emulator); they are answered with DynamoDB's 400 ValidationException.
- Memory: moto keeps every DynamoDB `Item` object it ever creates in a class-level list (for its
  introspection API), including the copies each Query and transaction makes, so the emulator grew by about
  1 KB per item any query returned. DynamoDB items are no longer tracked there.

The emulator runs DynamoDB calls one at a time (emulator.py), which these rely on.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import functools
import json
import pickle
import weakref
from collections import defaultdict, deque
from typing import Any

_APPLIED = False


def apply() -> None:
    global _APPLIED
    if _APPLIED:
        return
    from moto.dynamodb import models
    from moto.dynamodb.models.dynamo_type import Item
    from moto.dynamodb.models.table import Table

    Item.instances_tracked = _Untracked()
    Item.__init__ = _item_init_linear(_sizes_summed_plainly())
    models.DynamoDBBackend.transact_write_items = _rolled_back_by_item(models.DynamoDBBackend.transact_write_items)
    models.copy = _NoTableCopies(Table)  # the module's `copy.deepcopy(table)` now returns the table itself
    Table.query = _one_partition(Table.query)
    _dispatch_once()
    _results_as_json()
    _retention_from_the_queue()
    _update_expressions_parsed_once()
    _conditions_lexed_once()
    _expression_errors_as_validation()
    for name in _WRITES:
        setattr(models.DynamoDBBackend, name, _counted(getattr(models.DynamoDBBackend, name)))
    _APPLIED = True


# Every call of moto's backend that changes a table (the batch and transaction calls go through the first
# three too, and are counted themselves in case they do not).
_WRITES = (
    "put_item",
    "update_item",
    "delete_item",
    "transact_write_items",
    "batch_write_item",
    "execute_statement",
    "create_table",
    "update_table",
    "delete_table",
    "restore_table_from_backup",
    "restore_table_to_point_in_time",
    "import_table",
)
_state = {"version": 0}  # bumped by every write: index maps built at an older version are stale
_index_maps: dict[tuple[int, str], tuple[int, dict]] = {}  # (id(table), attribute) -> (version, map)


def _counted(method):
    @functools.wraps(method)
    def write(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        finally:
            _state["version"] += 1

    return write


def _items_with(table, attribute: str, value) -> list:
    """The table's items whose `attribute` is `value`, from a map rebuilt only after a write."""
    key = (id(table), attribute)
    cached = _index_maps.get(key)
    if cached is None or cached[0] != _state["version"]:
        for stale in [k for k, (version, _) in _index_maps.items() if version != _state["version"]]:
            del _index_maps[stale]  # maps of an older state (or of a deleted table) are never read again
        groups: dict = defaultdict(list)
        for item in type(table).all_items(table):
            found = item.attrs.get(attribute)
            if found is not None and found.type in ("S", "N", "B"):
                groups[found].append(item)  # only scalars can be index keys (DynamoDB skips the rest)
        cached = (_state["version"], groups)
        _index_maps[key] = cached
    return cached[1].get(value, [])


def _dispatch_once() -> None:
    from moto import backends
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules
    find = DomainDispatcherApplication.get_backend_for_host
    found: dict = {}

    @functools.wraps(find)
    def get_backend_for_host(self, host):
        if host not in found:
            found[host] = find(self, host)
        return found[host]

    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host


# The DynamoDB calls whose results are items, keys and capacity: plain DynamoDB JSON, blobs in base64.
_PLAIN_RESULTS = frozenset(
    {
        "GetItem",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "Query",
        "Scan",
        "BatchGetItem",
        "BatchWriteItem",
        "TransactGetItems",
        "TransactWriteItems",
    }
)


def _results_as_json() -> None:
    from moto.core.responses import ActionResult
    from moto.core.utils import get_service_model
    from moto.dynamodb.responses import DynamoHandler

    generic = DynamoHandler.serialized
    model = get_service_model("dynamodb")
    members = {action: tuple(model.operation_model(action).output_shape.members) for action in _PLAIN_RESULTS}

    @functools.wraps(generic)
    def serialized(self, action_result):
        result = action_result.result
        action = self._get_action()
        if (
            action in members
            and isinstance(result, dict)
            and type(action_result).execute_result is ActionResult.execute_result
        ):
            # the output's members only, in the model's order, as moto's serializer writes them
            body = {name: result[name] for name in members[action] if result.get(name) is not None}
            headers = {"Content-Type": "application/x-amz-json-1.0", **self.response_headers}
            return 200, headers, json.dumps(body, default=_blob)
        return generic(self, action_result)

    DynamoHandler.serialized = serialized


def _blob(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} is not DynamoDB JSON")


def _retention_from_the_queue() -> None:
    from moto.core.utils import unix_time
    from moto.sqs.models import SQSBackend

    def is_message_valid_based_on_retention_period(self, queue_name: str, message) -> bool:
        retention = int(self.get_queue(queue_name).message_retention_period)
        return retention + message.sent_timestamp / 1000 > unix_time()

    SQSBackend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period
    _queue_counts_at_one_instant()


def _queue_counts_at_one_instant() -> None:
    """moto counts a queue's messages (its visible, delayed and in-flight ones, and the visible ones it delivers
    from) by asking each message whether it is visible or delayed, each answer a reading of the clock through
    datetime; and it counts them for every message sent (the queue's attributes, read for one setting). Each
    count now reads the clock once and compares each message with it."""
    from moto.core.utils import unix_time_millis
    from moto.sqs.models import Queue

    def messages(self) -> list:
        now = unix_time_millis()
        return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]

    def delayed(self) -> int:
        now = unix_time_millis()
        return sum(1 for m in self._messages if now < m.delayed_until)

    def not_visible(self) -> int:
        now = unix_time_millis()
        return sum(1 for m in self._messages if not now > m.visible_at)

    Queue.messages = property(messages)
    Queue.approximate_number_of_messages_delayed = property(delayed)
    Queue.approximate_number_of_messages_not_visible = property(not_visible)


def _update_expressions_parsed_once() -> None:
    from moto.dynamodb.parsing import validators
    from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser, Node
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    parse = UpdateExpressionParser.make.__func__
    # A kept tree whose clause counts passed -> the sets of attribute names its paths passed the overlap check
    # with (that check, like the count, reads only the tree and the names; ten sets at most kept a tree). A
    # tree that fails either is checked by every call, as moto does.
    checked: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    # A kept tree -> its pickled form: a validation's copy of the tree is made from it (in C, twice as fast).
    pickled: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    @functools.lru_cache(maxsize=256)
    def parsed(cls, expression: str):
        tree = parse(cls, expression)  # a malformed expression raises, and is not kept
        with contextlib.suppress(Exception):  # too many clauses: left to every call's own validation
            validators.ActionCountValidator().traverse(copy.deepcopy(tree))
            checked[tree] = set()
        with contextlib.suppress(Exception):  # a tree pickle cannot take is deep-copied, as moto does
            pickled[tree] = pickle.dumps(tree, protocol=pickle.HIGHEST_PROTOCOL)
        return tree

    def tree_copy(value, memo=None):
        blob = pickled.get(value) if isinstance(value, Node) else None
        # The bytes are this process's own pickle of a tree it parsed: nothing from outside is unpickled.
        return copy.deepcopy(value, memo) if blob is None else pickle.loads(blob)  # noqa: S301

    def make(cls, expression: str):
        if len(expression) > KEPT_EXPRESSION:  # past DynamoDB's own limit: parsed each time, not kept
            return parse(cls, expression)
        return parsed(cls, expression)  # every caller reads the tree, or deep-copies it before changing it

    UpdateExpressionParser.make = classmethod(make)

    processors = validators.UpdateExpressionValidator.get_ast_processors

    def passes(tree, passed: set, check) -> bool:
        """Whether the tree passes `check` (a validator that reads only the tree and what its key holds): run
        once per key and kept when it passes, twenty keys a tree at most; a failing one runs on every call."""
        names = check.expression_attribute_names
        try:
            key = (
                type(check),
                None if names is None else frozenset(names.items()),
                tuple(getattr(check, "table_key_attributes", ())),
            )
            hash(key)
        except (TypeError, AttributeError):  # names that are not text (a client past boto3's checks): moto's path
            return False
        if key not in passed and len(passed) < 20:
            with contextlib.suppress(Exception):
                check.traverse(copy.deepcopy(tree))
                passed.add(key)
        return key in passed

    def get_ast_processors(self):
        found = processors(self)
        tree = self.parsed_tree
        passed = checked.get(tree)
        if passed is None:  # not kept, or its clauses failed the count: moto's own checks
            return found
        once = (validators.OverlappingPathsValidator, validators.UpdateHashRangeKeyValidator)
        return [
            p
            for p in found
            if not isinstance(p, validators.ActionCountValidator)  # counted when the tree was parsed
            and not (isinstance(p, once) and passes(tree, passed, p))
        ]

    init = validators.Validator.__init__

    def validator_init(self, expression, *args, **kwargs):
        self.parsed_tree = expression
        init(self, expression, *args, **kwargs)

    validators.Validator.__init__ = validator_init
    validators.deepcopy = tree_copy  # the module's own name for copy.deepcopy: the tree's copy, and one other
    validators.UpdateExpressionValidator.get_ast_processors = get_ast_processors

    # Each of the ten traversers of a validation built its map of node types anew for every node it visited, and
    # asked isinstance of an ABC twice a node: the map is kept per traverser, the answers per pair of classes.
    def processing_map(self) -> dict:
        found = self.__dict__.get("_kept_map")
        if found is None:
            found = self._kept_map = self._processing_map()
        return found

    kinds: dict[tuple[type, type], tuple[bool, bool]] = {}

    hooked: dict[type, bool] = {}  # traverser class -> whether it has a hook before each child (one does)
    no_hook = DepthFirstTraverser.pre_processing_of_child

    def traverse_node_recursively(self, node, child_id=-1):
        kind = kinds.get((type(self), type(node)))
        if kind is None:
            types = tuple(processing_map(self))
            kind = kinds[(type(self), type(node))] = (isinstance(node, Node), isinstance(node, types))
        if kind[0]:
            parent_node = node.parent
            if node.children is not None:
                hook = hooked.get(type(self))
                if hook is None:
                    hook = hooked[type(self)] = type(self).pre_processing_of_child is not no_hook
                for i, child_node in enumerate(node.children):
                    if hook:
                        self.pre_processing_of_child(node, i)
                    if type(child_node) not in _ATOMIC:  # a string child is no node: nothing to visit
                        self.traverse_node_recursively(child_node, i)
            if kind[1]:
                node = self.process(node)
                node.parent = parent_node
                if parent_node:
                    parent_node.children[child_id] = node
        return node

    def process(self, node):
        for class_key, processor in processing_map(self).items():
            if isinstance(node, class_key):
                return processor(node)

    DepthFirstTraverser.traverse_node_recursively = traverse_node_recursively
    DepthFirstTraverser.process = process
    Node.__deepcopy__ = _node_copy


def _conditions_lexed_once() -> None:
    """moto lexed each ConditionExpression (and FilterExpression) twice a call, a regular expression a token;
    the tokens of an expression are kept (named tuples, read-only in the stages after)."""
    from moto.dynamodb.comparisons import ConditionExpressionParser

    lex = ConditionExpressionParser._lex_condition_expression

    @functools.lru_cache(maxsize=256)
    def lexed(expression: str) -> tuple:
        return tuple(lex(ConditionExpressionParser(expression, None, None)))  # a malformed one raises, each time

    def lex_condition_expression(self):
        if len(self.condition_expression) > KEPT_EXPRESSION:
            return lex(self)
        return deque(lexed(self.condition_expression))

    ConditionExpressionParser._lex_condition_expression = lex_condition_expression


# The DynamoDB calls that take expressions: moto crashes (a 500 from the emulator) on some of their mistakes.
_EXPRESSION_CALLS = ("put_item", "update_item", "delete_item", "get_item", "query", "scan", "transact_write_items")


def _expression_errors_as_validation() -> None:
    """moto answers some mistakes in an expression by crashing, a 500 where DynamoDB answers a 400
    ValidationException: a `#name` or `:value` the request does not define (a KeyError of that placeholder), and
    a ConditionExpression or FilterExpression its parser cannot read (a ValueError: `x = = :a`, `(x = :a`). They
    are answered as DynamoDB does; any other error is left as it was."""
    from moto.dynamodb.exceptions import MockValidationException
    from moto.dynamodb.responses import DynamoHandler

    def validation(exc: Exception) -> MockValidationException | None:
        if isinstance(exc, KeyError) and len(exc.args) == 1 and str(exc.args[0])[:1] in ("#", ":"):
            placeholder = exc.args[0]
            kind = "name" if placeholder[0] == "#" else "value"
            return MockValidationException(
                f"An expression attribute {kind} used in an expression is not defined; attribute {kind}: {placeholder}"
            )
        if isinstance(exc, ValueError) and _raised_in(exc, "/moto/dynamodb/comparisons.py"):
            return MockValidationException(f"Invalid expression: Syntax error; {exc}")
        return None

    def answered(handler):
        @functools.wraps(handler)
        def call(self):
            try:
                return handler(self)
            except (KeyError, ValueError) as exc:
                error = validation(exc)
                if error is None:
                    raise
                raise error from exc

        return call

    for name in _EXPRESSION_CALLS:
        setattr(DynamoHandler, name, answered(getattr(DynamoHandler, name)))


def _raised_in(exc: BaseException, path: str) -> bool:
    """Whether the exception was raised in a file whose path ends with `path`."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_filename.endswith(path)


_ATOMIC = (str, int, float, bool, type(None))
KEPT_EXPRESSION = 4096  # DynamoDB's limit on an expression's length: longer ones are not kept (nor valid on AWS)


def _node_copy(node, memo: dict):
    """A tree node's deep copy, as copy.deepcopy makes it (the same attributes, each copied): a node holds its
    type's name, its parent (copied already: found in `memo`) and a list of children, nodes or strings. It
    takes half copy's stack a level, so it copies trees twice as deep as moto could (`a + b + ...` of some
    300 operands, where moto's copy hit Python's recursion limit at 160)."""
    new = object.__new__(type(node))
    memo[id(node)] = new
    copied = {}
    for name, value in node.__dict__.items():
        if type(value) is list:
            copied[name] = [_copied(v, memo) for v in value]
        else:
            copied[name] = _copied(value, memo)
    new.__dict__.update(copied)
    return new


def _copied(value, memo: dict):
    if type(value) in _ATOMIC:
        return value
    found = memo.get(id(value))
    if found is not None:
        return found
    if getattr(type(value), "__deepcopy__", None) is _node_copy:
        return _node_copy(value, memo)
    return copy.deepcopy(value, memo)


def _item_init_linear(summed):
    """moto's Item.__init__, in time linear in the item's attributes: moto's size check summed every attribute
    the item had so far for each one it added (the job item's 35, 600 sizes a PutItem). Sizes only add up, so
    the item passes every one of those checks exactly when its whole size passes the last (`summed`: the
    attributes' size, as moto sums it)."""
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import DynamoType, LimitedSizeDict

    def item_init(self, hash_key, range_key, attrs: dict[str, Any]) -> None:
        self.hash_key = hash_key
        self.range_key = range_key
        converted = {key: DynamoType(value) for key, value in attrs.items()}
        if summed(converted) > LIMITED_SIZE:
            raise ItemSizeTooLarge
        self.attrs = LimitedSizeDict()
        dict.update(self.attrs, converted)  # checked above, in one sum

    return item_init


LIMITED_SIZE = 405_000  # moto's item size limit (dynamo_type.LimitedSizeDict)


def _sizes_summed_plainly():
    """An item's size as moto sums it, without its detours: each attribute set by an update summed the whole
    item again (the job's end sets 12 attributes of its 40: some 500 values sized), through two lists built of
    its names and values and four type tests a value before the text's length. The same sums, in the same
    cases: a number's digits, a list's members, sets and maps by moto itself, any other value one byte for a
    boolean, else its UTF-8 bytes. Returns the sum of an item's attributes, which a new item's check uses too."""
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import DynamoType, LimitedSizeDict
    from moto.dynamodb.models.utilities import bytesize

    sized_by_moto = DynamoType.size
    by_moto = frozenset(("SS", "NS", "BS", "M"))

    def size(self) -> int:
        kind = self.type
        if kind == "N":
            return len(str(self.value))
        if kind in by_moto:
            return sized_by_moto(self)
        if kind == "L":
            return sum(v.size() for v in self.value)
        return 1 if isinstance(self.value, bool) else bytesize(self.value)

    def sized(value) -> int:
        return value.size() if type(value) is DynamoType else bytesize(str(value))

    def summed(attrs: dict) -> int:
        """The attributes' names and values, summed as moto's size check sums them."""
        return sum(sized(name) + sized(held) for name, held in dict.items(attrs))

    def setitem(self, key: str, value: Any) -> None:
        if summed(self) + bytesize(key) + sized(value) > LIMITED_SIZE:
            raise ItemSizeTooLarge
        dict.__setitem__(self, key, value)

    DynamoType.size = size
    LimitedSizeDict.__setitem__ = setitem
    return summed


class _Untracked(list):
    """A list that keeps nothing: moto appends every instance of a model class to one."""

    def append(self, _instance: Any) -> None:
        pass


class _NoTableCopies:
    """Stands in for the `copy` module inside moto.dynamodb.models: deep copies of anything but a table."""

    def __init__(self, table_type: type):
        self._table_type = table_type

    def deepcopy(self, value: Any, memo: dict | None = None) -> Any:
        if isinstance(value, self._table_type):
            return value
        return copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


def _rolled_back_by_item(transact):
    @functools.wraps(transact)
    def transact_write_items(self, transact_items: list[dict[str, Any]]) -> None:
        saved = []
        for entry in transact_items:
            op = next(iter(entry.values()), {})
            table = self.tables.get(op.get("TableName")) if isinstance(op, dict) else None
            if table is None:
                continue
            keys = op.get("Key") or {
                name: op.get("Item", {}).get(name) for name in (table.hash_key_attr, table.range_key_attr) if name
            }
            try:
                hash_key, range_key = self.get_keys_value(table, keys)
            except Exception:  # a malformed key: moto's own call reports it; nothing to save
                hash_key = None
            if hash_key is not None:
                saved.append((table, hash_key, range_key, copy.deepcopy(table.get_item(hash_key, range_key))))
        try:
            transact(self, transact_items)
        except Exception:
            for table, hash_key, range_key, item in reversed(saved):
                _restore(table, hash_key, range_key, item)
            raise

    return transact_write_items


def _restore(table, hash_key, range_key, item) -> None:
    if table.range_key_attr:
        partition = table.items[hash_key]
        if item is None:
            partition.pop(range_key, None)
            if not partition:
                table.items.pop(hash_key, None)
        else:
            partition[range_key] = item
    elif item is None:
        table.items.pop(hash_key, None)
    else:
        table.items[hash_key] = item


def _one_partition(query):
    @functools.wraps(query)
    def one_partition_query(self, hash_key, *args, **kwargs):
        # moto's backend passes index_name as the 8th argument (after self); keep both ways working.
        index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
        conditions = kwargs.get("hash_key_conditions") or []
        if index_name and len(conditions) == 1:
            items = _items_with(self, *conditions[0])
        elif index_name or hash_key is None:
            return query(self, hash_key, *args, **kwargs)
        else:
            partition = self.items.get(hash_key)
            if partition is None:
                items = []
            elif self.range_key_attr:
                items = list(partition.values())
            else:
                items = [partition]
        # This call's walk: the candidates only (moto still checks every condition; calls run one at a time).
        self.all_items = lambda: iter(items)
        try:
            return query(self, hash_key, *args, **kwargs)
        finally:
            del self.all_items

    return one_partition_query
