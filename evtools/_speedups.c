/* evtools._speedups: the hot paths of typed rehydration, in C (optional).
 *
 * The pure-Python versions stay the reference and the fallback (evtools/scalars.py,
 * evtools/_json.py, evtools/_keys.py, evtools/registry.py and Rehydration._feed_all_python
 * in evtools/rehydration.py); the build skips this module where no compiler is found, and
 * every answer here is either the Python one or "ask Python" (tests/test_speedups.py
 * compares them, and tests/test_rehydration.py runs every test over both loops):
 *
 * TimestampHook(timestamp_cls, fallback)
 *     A msgspec ``dec_hook``. For ``timestamp_cls`` and an ASCII str that is an RFC 3339
 *     timestamp with a valid calendar date (seconds 00-59), it builds the Timestamp
 *     directly (text kept, nothing parsed yet), as the Python hook's fast path does; for
 *     anything else it returns ``fallback(type, obj)``.
 *
 * duplicate_key(data) -> bool | None
 *     Whether some object of the JSON document ``data`` repeats a key: True or False when
 *     that is certain, None when it cannot tell cheaply (a key with an escape, nesting
 *     deeper than 64, more than 256 keys open at once, or input that is not well formed).
 *     Keys without escapes are equal exactly when their bytes are, so the byte comparison
 *     is exact.
 *
 * FiniteDecode(decode, getters, check, refuse, decimal_cls)
 *     A decode that refuses a non-finite Decimal (evtools/_decimals.py): ``decode(data)``,
 *     then what each getter reads must not be a decimal_cls whose ``is_finite()`` is not
 *     True, and ``check`` (or None) must return True; otherwise (or when either raises)
 *     ``refuse(value)`` raises the error, or returns the value when it finds nothing.
 *
 * Folder(...).run(rehydration, events, tolerance_ns)
 *     The common case of Rehydration.feed_all (see "the fold" below).
 *
 * timestamp_shape(text) -> bool
 *     The fast path's acceptance test alone (for the property tests).
 *
 * rows_look_right(rows, with_stream) -> bool
 *     The SQLite store's look at a page of rows: whether each holds the types its schema
 *     says (see "rows of the SQLite store" below).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <datetime.h>
#include <limits.h>
#include <string.h>

/* -- RFC 3339 timestamps ------------------------------------------------------------------ */

static inline int
is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static inline int
two(const unsigned char *s)
{
    return (s[0] - '0') * 10 + (s[1] - '0');
}

static int
days_in_month(int year, int month)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month == 2 && (year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)))
        return 29;
    return days[month - 1];
}

/* 1 when s[0:n] is YYYY-MM-DD(T|t)HH:MM:SS[.f{1,9}](Z|z|+HH:MM|-HH:MM), year 0001-9999,
 * a real calendar day, hour 00-23, minute and second 00-59 (a leap second, 60, takes the
 * Python path); else 0. */
static int
timestamp_shape_ok(const unsigned char *s, Py_ssize_t n)
{
    static const char layout[] = "dddd-dd-ddTdd:dd:dd";
    Py_ssize_t i;
    if (n < 20 || n > 35)
        return 0;
    for (i = 0; i < 19; i++) {
        char want = layout[i];
        if (want == 'd') {
            if (!is_digit(s[i]))
                return 0;
        }
        else if (want == 'T') {
            if (s[i] != 'T' && s[i] != 't')
                return 0;
        }
        else if (s[i] != (unsigned char)want) {
            return 0;
        }
    }
    int year = two(s) * 100 + two(s + 2);
    int month = two(s + 5);
    int day = two(s + 8);
    if (year == 0 || month < 1 || month > 12 || day < 1
            || day > days_in_month(year, month))
        return 0;
    if (two(s + 11) > 23 || two(s + 14) > 59 || two(s + 17) > 59)
        return 0;
    i = 19;
    if (s[i] == '.') {
        Py_ssize_t start = ++i;
        while (i < n && is_digit(s[i]))
            i++;
        if (i == start || i - start > 9)
            return 0;
    }
    if (i == n - 1)
        return s[i] == 'Z' || s[i] == 'z';
    if (i != n - 6 || (s[i] != '+' && s[i] != '-'))
        return 0;
    if (!is_digit(s[i + 1]) || !is_digit(s[i + 2]) || s[i + 3] != ':'
            || !is_digit(s[i + 4]) || !is_digit(s[i + 5]))
        return 0;
    return two(s + i + 1) <= 23 && two(s + i + 4) <= 59;
}

static int
ascii_timestamp(PyObject *obj)
{
    if (!PyUnicode_CheckExact(obj) || !PyUnicode_IS_ASCII(obj))
        return 0;
    return timestamp_shape_ok((const unsigned char *)PyUnicode_DATA(obj),
                              PyUnicode_GET_LENGTH(obj));
}

typedef struct {
    PyObject_HEAD
    PyTypeObject *timestamp;  /* the class this hook builds */
    PyObject *fallback;       /* the Python dec_hook, for everything else */
    Py_ssize_t text_offset;   /* of the _text slot */
    Py_ssize_t dt_offset;     /* of the _dt slot */
    vectorcallfunc vectorcall;
} TimestampHook;

static Py_ssize_t
slot_offset(PyTypeObject *cls, const char *name)
{
    PyObject *descr = PyObject_GetAttrString((PyObject *)cls, name);
    if (descr == NULL)
        return -1;
    Py_ssize_t offset = -1;
    if (Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
        if (member->type == T_OBJECT_EX && member->offset > 0
                && member->offset + (Py_ssize_t)sizeof(PyObject *) <= cls->tp_basicsize)
            offset = member->offset;
    }
    Py_DECREF(descr);
    if (offset < 0)
        PyErr_Format(PyExc_TypeError, "%s.%s is not a __slots__ member", cls->tp_name, name);
    return offset;
}

static PyObject *
hook_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    TimestampHook *self = (TimestampHook *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs == 2 && kwnames == NULL && args[0] == (PyObject *)self->timestamp
            && ascii_timestamp(args[1])) {
        PyTypeObject *tp = self->timestamp;
        PyObject *ts = tp->tp_alloc(tp, 0);
        if (ts == NULL)
            return NULL;
        char *base = (char *)ts;
        Py_INCREF(args[1]);
        *(PyObject **)(base + self->text_offset) = args[1];
        Py_INCREF(Py_None);
        *(PyObject **)(base + self->dt_offset) = Py_None;
        return ts;
    }
    return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
}

static PyObject *
hook_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *cls, *fallback;
    static char *kwlist[] = {"timestamp_cls", "fallback", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O:TimestampHook", kwlist,
                                     &PyType_Type, &cls, &fallback))
        return NULL;
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "fallback must be callable");
        return NULL;
    }
    PyTypeObject *tp = (PyTypeObject *)cls;
    if (tp->tp_dictoffset != 0) {
        PyErr_Format(PyExc_TypeError, "%s must define __slots__ and no __dict__",
                     tp->tp_name);
        return NULL;
    }
    Py_ssize_t text_offset = slot_offset(tp, "_text");
    if (text_offset < 0)
        return NULL;
    Py_ssize_t dt_offset = slot_offset(tp, "_dt");
    if (dt_offset < 0)
        return NULL;
    TimestampHook *self = (TimestampHook *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    Py_INCREF(cls);
    self->timestamp = tp;
    Py_INCREF(fallback);
    self->fallback = fallback;
    self->text_offset = text_offset;
    self->dt_offset = dt_offset;
    self->vectorcall = hook_vectorcall;
    return (PyObject *)self;
}

static int
hook_traverse(TimestampHook *self, visitproc visit, void *arg)
{
    Py_VISIT(self->timestamp);
    Py_VISIT(self->fallback);
    return 0;
}

static int
hook_clear(TimestampHook *self)
{
    Py_CLEAR(self->timestamp);
    Py_CLEAR(self->fallback);
    return 0;
}

static void
hook_dealloc(TimestampHook *self)
{
    PyObject_GC_UnTrack(self);
    hook_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
hook_repr(TimestampHook *self)
{
    return PyUnicode_FromFormat("<evtools dec_hook for %s, else %R>", self->timestamp->tp_name,
                                self->fallback);
}

static PyMemberDef hook_members[] = {
    {"fallback", T_OBJECT, offsetof(TimestampHook, fallback), READONLY,
     "the Python dec_hook that answers for everything but plain timestamps"},
    {NULL}
};

static PyTypeObject TimestampHookType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "evtools._speedups.TimestampHook",
    .tp_basicsize = sizeof(TimestampHook),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "TimestampHook(timestamp_cls, fallback): a msgspec dec_hook building "
              "timestamp_cls from plain RFC 3339 text in C, calling fallback otherwise.",
    .tp_new = hook_new,
    .tp_dealloc = (destructor)hook_dealloc,
    .tp_traverse = (traverseproc)hook_traverse,
    .tp_clear = (inquiry)hook_clear,
    .tp_repr = (reprfunc)hook_repr,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(TimestampHook, vectorcall),
    .tp_members = hook_members,
};

static PyObject *
timestamp_shape(PyObject *module, PyObject *text)
{
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "timestamp_shape takes a str");
        return NULL;
    }
    return PyBool_FromLong(PyUnicode_IS_ASCII(text)
                           && timestamp_shape_ok((const unsigned char *)PyUnicode_DATA(text),
                                                 PyUnicode_GET_LENGTH(text)));
}

/* -- duplicate keys ------------------------------------------------------------------------ */

#define MAX_DEPTH 64
#define MAX_KEYS 256

enum { NO_DUPLICATE = 0, DUPLICATE = 1, UNKNOWN = -1 };

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
    const unsigned char *key_start[MAX_KEYS];
    Py_ssize_t key_len[MAX_KEYS];
    int nkeys;
} Scanner;

static inline void
skip_space(Scanner *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
        s->p++;
}

/* At an opening quote: move past the closing one. 1 when the string held an escape, 0
 * when not, -1 when it does not end. memchr finds the quote and any backslash before it
 * (most strings have none). */
static int
skip_string(Scanner *s)
{
    int escaped = 0;
    const unsigned char *p = s->p + 1;
    for (;;) {
        if (p >= s->end)
            return -1;
        const unsigned char *quote = memchr(p, '"', (size_t)(s->end - p));
        if (quote == NULL)
            return -1;
        const unsigned char *backslash = memchr(p, '\\', (size_t)(quote - p));
        if (backslash == NULL) {
            s->p = quote + 1;
            return escaped;
        }
        escaped = 1;
        p = backslash + 2;  /* the escaped character is never the closing quote */
    }
}

/* what may follow a number or literal: the end of the value (END) or, out of place, a
 * token that means the input is not what we scan (STRAY) */
enum { END = 1, STRAY = 2 };
static const unsigned char AFTER_SCALAR[256] = {
    [','] = END, ['}'] = END, [']'] = END, [' '] = END, ['\n'] = END, ['\r'] = END,
    ['\t'] = END, ['{'] = STRAY, ['['] = STRAY, ['"'] = STRAY, [':'] = STRAY,
};

static int scan_value(Scanner *s, int depth);

/* After an item of an object or array: 1 past a comma (another item follows), 0 past
 * `close`, -1 at anything else. */
static int
next_item(Scanner *s, unsigned char close)
{
    skip_space(s);
    if (s->p < s->end) {
        if (*s->p == ',') {
            s->p++;
            return 1;
        }
        if (*s->p == close) {
            s->p++;
            return 0;
        }
    }
    return -1;
}

static int
scan_object(Scanner *s, int depth)
{
    int base = s->nkeys;
    s->p++;  /* { */
    skip_space(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return NO_DUPLICATE;
    }
    for (;;) {
        skip_space(s);
        if (s->p >= s->end || *s->p != '"')
            return UNKNOWN;
        const unsigned char *start = s->p + 1;
        int escaped = skip_string(s);
        if (escaped != 0)
            return UNKNOWN;  /* unterminated, or an escape: compare decoded keys in Python */
        Py_ssize_t len = (s->p - 1) - start;
        for (int i = base; i < s->nkeys; i++) {
            if (s->key_len[i] == len && memcmp(s->key_start[i], start, (size_t)len) == 0)
                return DUPLICATE;
        }
        if (s->nkeys == MAX_KEYS)
            return UNKNOWN;
        s->key_start[s->nkeys] = start;
        s->key_len[s->nkeys] = len;
        s->nkeys++;
        skip_space(s);
        if (s->p >= s->end || *s->p != ':')
            return UNKNOWN;
        s->p++;
        int found = scan_value(s, depth);
        if (found != NO_DUPLICATE)
            return found;
        int more = next_item(s, '}');
        if (more < 0)
            return UNKNOWN;
        if (!more) {
            s->nkeys = base;  /* this object's keys are done with */
            return NO_DUPLICATE;
        }
    }
}

static int
scan_array(Scanner *s, int depth)
{
    s->p++;  /* [ */
    skip_space(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        return NO_DUPLICATE;
    }
    for (;;) {
        int found = scan_value(s, depth);
        if (found != NO_DUPLICATE)
            return found;
        int more = next_item(s, ']');
        if (more < 0)
            return UNKNOWN;
        if (!more)
            return NO_DUPLICATE;
    }
}

static int
scan_value(Scanner *s, int depth)
{
    skip_space(s);
    if (s->p >= s->end)
        return UNKNOWN;
    switch (*s->p) {
    case '{':
        return depth >= MAX_DEPTH ? UNKNOWN : scan_object(s, depth + 1);
    case '[':
        return depth >= MAX_DEPTH ? UNKNOWN : scan_array(s, depth + 1);
    case '"':
        return skip_string(s) < 0 ? UNKNOWN : NO_DUPLICATE;
    default: {
        /* a number, true, false or null: up to the next delimiter */
        const unsigned char *start = s->p, *p = s->p, *end = s->end;
        while (p < end && !AFTER_SCALAR[*p])
            p++;
        s->p = p;
        if (p == start || (p < end && AFTER_SCALAR[*p] == STRAY))
            return UNKNOWN;
        return NO_DUPLICATE;
    }
    }
}

/* the document's verdict: NO_DUPLICATE, DUPLICATE or UNKNOWN */
static int
scan_document(const char *data, Py_ssize_t len)
{
    Scanner s;
    s.p = (const unsigned char *)data;
    s.end = s.p + len;
    s.nkeys = 0;
    int found = scan_value(&s, 0);
    if (found == NO_DUPLICATE) {
        skip_space(&s);
        if (s.p != s.end)
            found = UNKNOWN;  /* trailing text: not one JSON document */
    }
    return found;
}

static PyObject *
duplicate_key(PyObject *module, PyObject *data)
{
    if (!PyBytes_CheckExact(data)) {
        PyErr_Format(PyExc_TypeError, "duplicate_key takes bytes, not %.100s",
                     Py_TYPE(data)->tp_name);
        return NULL;
    }
    int found = scan_document(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data));
    if (found == UNKNOWN)
        Py_RETURN_NONE;
    return PyBool_FromLong(found == DUPLICATE);
}

/* -- rows of the SQLite store ------------------------------------------------------------- */
/*
 * rows_look_right(rows, with_stream) is the cheap look the SQLite store takes at a page of
 * rows after converting them (evtools/stores/sqlite.py, _py_rows_look_right is the Python
 * twin): whether every row holds what the schema says, as far as the types tell. False
 * sends the page to the row-by-row check, which decides and names what is wrong.
 */

static inline int
is_int_at_least(PyObject *v, long long least)
{
    if (!PyLong_CheckExact(v))
        return 0;
    int overflow;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (x == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return overflow > 0 || (overflow == 0 && x >= least);
}

static inline int
is_text(PyObject *v, int non_empty)
{
    return PyUnicode_CheckExact(v) && (!non_empty || PyUnicode_GET_LENGTH(v) > 0);
}

/* 1 when the text is what the store writes, datetime.isoformat() of a time in UTC:
 * YYYY-MM-DDTHH:MM:SS[.ffffff](+|-)HH:MM, ASCII digits (the Python twin is the regex
 * _store_time of evtools/stores/sqlite.py). Any other form (a date alone with an offset,
 * which fromisoformat reads as a naive midnight; nine digits of fraction, of which it keeps
 * six; "Z") goes to the row-by-row check, which decides. */
static int
store_time_ok(PyObject *when)
{
    /* d: an ASCII digit; f: the fraction's digits; s: the offset's sign */
    static const char layout[] = "dddd-dd-ddTdd:dd:dd.ffffffsdd:dd";
    Py_ssize_t n = PyUnicode_GET_LENGTH(when);
    if (n != 25 && n != 32)
        return 0;
    int kind = PyUnicode_KIND(when);
    const void *text = PyUnicode_DATA(when);
    for (Py_ssize_t i = 0; i < n; i++) {
        /* without a fraction the offset starts at 19 */
        char want = layout[n == 25 && i >= 19 ? i + 7 : i];
        Py_UCS4 ch = PyUnicode_READ(kind, text, i);
        if (want == 'd' || want == 'f') {
            if (ch < '0' || ch > '9')
                return 0;
        }
        else if (want == 's') {
            if (ch != '+' && ch != '-')
                return 0;
        }
        else if (ch != (Py_UCS4)(unsigned char)want) {
            return 0;
        }
    }
    return 1;
}

static PyObject *
rows_look_right(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyList_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "rows_look_right(rows: list, with_stream: bool)");
        return NULL;
    }
    PyObject *rows = args[0];
    int with_stream = PyObject_IsTrue(args[1]);
    if (with_stream < 0)
        return NULL;
    Py_ssize_t width = 9 + with_stream;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(rows); i++) {
        PyObject *row = PyList_GET_ITEM(rows, i);
        if (!PyTuple_CheckExact(row) || PyTuple_GET_SIZE(row) != width)
            Py_RETURN_FALSE;
        PyObject *const *c = &PyTuple_GET_ITEM(row, with_stream);  /* from the version */
        if (with_stream && !is_text(PyTuple_GET_ITEM(row, 0), 1))
            Py_RETURN_FALSE;
        /* version, type, data, metadata, id, recorded_at, position, content type, schema
         * version */
        if (!is_int_at_least(c[0], 0) || !is_text(c[1], 1) || !PyBytes_CheckExact(c[2])
                || !PyBytes_CheckExact(c[3]) || !is_text(c[4], 0)
                || !is_int_at_least(c[6], 0) || (c[7] != Py_None && !is_text(c[7], 0))
                || !is_int_at_least(c[8], 1))
            Py_RETURN_FALSE;
        PyObject *when = c[5];  /* None, or the text the store writes (store_time_ok) */
        if (when != Py_None) {
            if (!PyUnicode_CheckExact(when))
                Py_RETURN_FALSE;
            /* "" is refused by the conversion before this look */
            if (PyUnicode_GET_LENGTH(when) > 0 && !store_time_ok(when))
                Py_RETURN_FALSE;
        }
    }
    Py_RETURN_TRUE;
}

/* -- the fold ------------------------------------------------------------------------------ */
/*
 * Folder(...).run(rehydration, events) is the common case of Rehydration.feed_all in C:
 * the next version of the stream, nothing unusual, checked, applied, invariants run. It
 * keeps the per-event state in C between calls back into Python, exactly as feed_all
 * keeps it in locals: every unusual event goes through rehydration.feed(raw) (with the
 * state written back first and read again after), and every violation through the same
 * Python methods feed_all calls (so does an event whose stream or id is not exactly a str:
 * feed() says what is wrong with it). What it cannot take (an object that is not exactly a
 * RawEvent, a version that is not a machine-sized int) it hands back: run() returns that
 * event, and feed_all goes on in Python from there. None when the events are exhausted.
 */

static PyObject *s_stream, *s_expected, *s_max_seen, *s_last_id, *s_prev_time,
    *s_prev_text, *s_events_seen, *s_events_applied, *s_applied_version, *s_applied_id,
    *s_applied_time, *s_buffer, *s_halted_at, *s_verify, *s_in_prefix, *s_aggregate,
    *s_feed, *s_check_time, *s_unhandled, *s_handler_failed, *s_invariant_violated, *s_text,
    *s_is_finite;

/* the RawEvent fields the loop reads, by their slot offsets (RawEvent is a frozen Struct) */
enum { F_STREAM, F_VERSION, F_TYPE, F_DATA, F_ID, F_RECORDED_AT, F_CONTENT_TYPE,
       F_SCHEMA_VERSION, N_RAW_FIELDS };
static const char *const RAW_FIELDS[N_RAW_FIELDS] = {
    "stream", "version", "type", "data", "id", "recorded_at", "content_type", "schema_version",
};

typedef struct {
    PyObject_HEAD
    PyObject *decode;           /* rehydration._decode: raw -> typed event */
    PyObject *fast_decoders;    /* Registry._fast_decoders(), or None */
    PyObject *lossless_decode;  /* evtools._json.lossless.decode */
    PyObject *encode;           /* the registry's encoder (Decimal as JSON numbers) */
    int reject_duplicates;
    Py_ssize_t max_payload;
    PyObject *json_content_type;
    PyObject *handlers;         /* dict event class -> handler(aggregate, event) */
    PyObject *invariants;       /* dict event class -> ((name, check, takes_event), ...) */
    PyObject *id_field;         /* str or None */
    PyObject *time_field;       /* str or None */
    int ignore_unhandled;       /* the aggregate ignores events it has no handler for */
    PyTypeObject *timestamp;
    Py_ssize_t text_offset;
    PyTypeObject *raw_event;
    Py_ssize_t raw_offsets[N_RAW_FIELDS];
    PyObject *not_decoded;
    PyObject *input_error;
    PyObject *no_event;
    PyObject *run_invariant;
} Folder;

typedef struct {
    long long expected, top, seen, applied, applied_version;
    PyObject *last_id, *prev_time, *prev_text, *applied_id, *applied_time, *stream;
    int clean, adopt;
    int loaded;  /* the fields hold the rehydration's state (local_load succeeded) */
    int synced;  /* ... and the rehydration holds the fields' (nothing to store) */
} Local;

/* raw.<field> of an exact RawEvent, a new reference (its slot read directly) */
static PyObject *
raw_get(Folder *f, PyObject *raw, int field)
{
    PyObject *v = *(PyObject **)((char *)raw + f->raw_offsets[field]);
    if (v == NULL) {
        PyErr_Format(PyExc_AttributeError, "RawEvent has no value for %s", RAW_FIELDS[field]);
        return NULL;
    }
    Py_INCREF(v);
    return v;
}

static void
local_clear(Local *L)
{
    Py_CLEAR(L->last_id);
    Py_CLEAR(L->prev_time);
    Py_CLEAR(L->prev_text);
    Py_CLEAR(L->applied_id);
    Py_CLEAR(L->applied_time);
    Py_CLEAR(L->stream);
}

/* a long long attribute; 1 ok, 0 not an int that fits (no error set), -1 error */
static int
get_ll(PyObject *obj, PyObject *name, long long *out)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL)
        return -1;
    int ok = 0;
    if (PyLong_CheckExact(v)) {
        int overflow;
        *out = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (*out == -1 && PyErr_Occurred()) {
            Py_DECREF(v);
            return -1;
        }
        ok = !overflow;
    }
    Py_DECREF(v);
    return ok;
}

static int
get_into(PyObject *obj, PyObject *name, PyObject **slot)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL)
        return -1;
    Py_XSETREF(*slot, v);
    return 0;
}

/* feed_all's load(); 1 ok, 0 the state does not fit C (hand back), -1 error */
static int
local_load(Local *L, PyObject *r)
{
    L->loaded = 0;
    int ok;
    if ((ok = get_ll(r, s_expected, &L->expected)) <= 0) return ok;
    if ((ok = get_ll(r, s_max_seen, &L->top)) <= 0) return ok;
    if ((ok = get_ll(r, s_events_seen, &L->seen)) <= 0) return ok;
    if ((ok = get_ll(r, s_events_applied, &L->applied)) <= 0) return ok;
    if ((ok = get_ll(r, s_applied_version, &L->applied_version)) <= 0) return ok;
    if (get_into(r, s_last_id, &L->last_id) < 0 || get_into(r, s_prev_time, &L->prev_time) < 0
            || get_into(r, s_prev_text, &L->prev_text) < 0
            || get_into(r, s_applied_id, &L->applied_id) < 0
            || get_into(r, s_applied_time, &L->applied_time) < 0
            || get_into(r, s_stream, &L->stream) < 0)
        return -1;
    if (L->prev_text != Py_None && !PyUnicode_CheckExact(L->prev_text))
        return 0;
    /* clean: a stream, no reorder buffer, not halted, no snapshot to verify or skip; the
     * stream may be named by the first event instead (adopt) */
    L->clean = L->adopt = 0;
    PyObject *v = PyObject_GetAttr(r, s_buffer);
    if (v == NULL)
        return -1;
    int busy = PyObject_IsTrue(v);
    Py_DECREF(v);
    if (busy < 0)
        return -1;
    if (busy)
        return 1;
    const PyObject *none_wanted[2] = {s_halted_at, s_verify};
    for (int i = 0; i < 2; i++) {
        v = PyObject_GetAttr(r, (PyObject *)none_wanted[i]);
        if (v == NULL)
            return -1;
        int is_none = v == Py_None;
        Py_DECREF(v);
        if (!is_none)
            return 1;
    }
    v = PyObject_GetAttr(r, s_in_prefix);
    if (v == NULL)
        return -1;
    int in_prefix = PyObject_IsTrue(v);
    Py_DECREF(v);
    if (in_prefix < 0)
        return -1;
    L->clean = !in_prefix && L->stream != Py_None;
    L->adopt = !in_prefix && L->stream == Py_None;
    L->loaded = L->synced = 1;
    return 1;
}

static int
set_ll(PyObject *obj, PyObject *name, long long value)
{
    PyObject *v = PyLong_FromLongLong(value);
    if (v == NULL)
        return -1;
    int rc = PyObject_SetAttr(obj, name, v);
    Py_DECREF(v);
    return rc;
}

/* feed_all's store() */
static int
local_store(Local *L, PyObject *r)
{
    if (set_ll(r, s_expected, L->expected) < 0 || set_ll(r, s_max_seen, L->top) < 0
            || set_ll(r, s_events_seen, L->seen) < 0
            || set_ll(r, s_events_applied, L->applied) < 0
            || set_ll(r, s_applied_version, L->applied_version) < 0
            || PyObject_SetAttr(r, s_last_id, L->last_id) < 0
            || PyObject_SetAttr(r, s_prev_time, L->prev_time) < 0
            || PyObject_SetAttr(r, s_prev_text, L->prev_text) < 0
            || PyObject_SetAttr(r, s_applied_id, L->applied_id) < 0
            || PyObject_SetAttr(r, s_applied_time, L->applied_time) < 0)
        return -1;
    L->synced = 1;
    return 0;
}

/* The exception raised (normalized, with its traceback), taken off the error indicator. */
static PyObject *
fetch_exception(void)
{
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    PyErr_NormalizeException(&type, &exc, &tb);
    if (tb != NULL && exc != NULL)
        PyException_SetTraceback(exc, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return exc;
}

/* store(); r.method(*args); load(), as feed_all's Python loop does it. `handling`, when
 * not NULL, is the exception being handled during the call (as inside an except block),
 * so that what the method raises has it as its __context__. 1 ok, 0 the state no longer
 * fits C, -1 error. */
static int
call_slow(Local *L, PyObject *r, PyObject *method, PyObject *a, PyObject *b, PyObject *c,
          PyObject *handling)
{
    if (local_store(L, r) < 0)
        return -1;
    PyObject *args[4] = {r, a, b, c};
    size_t n = 1 + (a != NULL) + (b != NULL) + (c != NULL);
    PyObject *saved_type = NULL, *saved = NULL, *saved_tb = NULL;
    if (handling != NULL) {
        PyErr_GetExcInfo(&saved_type, &saved, &saved_tb);
        PyErr_SetExcInfo(Py_NewRef((PyObject *)Py_TYPE(handling)), Py_NewRef(handling),
                         PyException_GetTraceback(handling));
    }
    PyObject *res = PyObject_VectorcallMethod(method, args, n | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                              NULL);
    if (handling != NULL)
        PyErr_SetExcInfo(saved_type, saved, saved_tb);
    if (res == NULL)
        return -1;
    Py_DECREF(res);
    return local_load(L, r);
}

/* The invariants after `event`, as feed_all runs them: a check that does not hold (False,
 * a message, an exception) goes to run_invariant for its message, and that to
 * rehydration._invariant_violated. 0, or -1 with an error set. */
static int
run_invariants(Folder *f, PyObject *r, PyObject *agg, PyObject *event, PyObject *raw)
{
    PyObject *checks = PyDict_GetItemWithError(f->invariants, (PyObject *)Py_TYPE(event));
    if (checks == NULL)
        return PyErr_Occurred() ? -1 : 0;
    /* our own reference: a check may replace the table's entry while it runs */
    if ((checks = PySequence_Tuple(checks)) == NULL)
        return -1;
    int rc = 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(checks) && rc == 0; i++) {
        PyObject *spec = PyTuple_GET_ITEM(checks, i);
        if (!PyTuple_CheckExact(spec) || PyTuple_GET_SIZE(spec) != 3) {
            PyErr_SetString(PyExc_TypeError, "invariant table entries are "
                            "(name, check, takes_event)");
            rc = -1;
            break;
        }
        PyObject *name = PyTuple_GET_ITEM(spec, 0), *check = PyTuple_GET_ITEM(spec, 1);
        int takes_event = PyObject_IsTrue(PyTuple_GET_ITEM(spec, 2));
        if (takes_event < 0) {
            rc = -1;
            break;
        }
        PyObject *cargs[2] = {agg, event};
        PyObject *outcome = PyObject_Vectorcall(check, cargs, takes_event ? 2 : 1, NULL);
        if (outcome == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_Exception)) {
                rc = -1;
                break;
            }
            PyErr_Clear();  /* run_invariant says how it failed */
        }
        else {
            int holds = outcome == Py_True || outcome == Py_None;
            Py_DECREF(outcome);
            if (holds)
                continue;
        }
        PyObject *bound = PyObject_GetAttr(agg, name);
        if (bound == NULL) {
            rc = -1;
            break;
        }
        PyObject *margs[3] = {name, bound, takes_event ? event : f->no_event};
        PyObject *message = PyObject_Vectorcall(f->run_invariant, margs, 3, NULL);
        Py_DECREF(bound);
        if (message == NULL) {
            rc = -1;
            break;
        }
        if (message != Py_None) {
            PyObject *vargs[3] = {r, raw, message};
            PyObject *done = PyObject_VectorcallMethod(
                s_invariant_violated, vargs, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
            if (done == NULL)
                rc = -1;
            Py_XDECREF(done);
        }
        Py_DECREF(message);
    }
    Py_DECREF(checks);
    return rc;
}

/* Registry._decode_upcast in C, for how = (first, steps, classes) of
 * Registry._fast_decoders: typed steps (first is the old class's decode, then each
 * upcaster, each result of its class) or dict steps (first None: the payload decoded
 * losslessly, lifted by each upcaster, written back and decoded into the latest class).
 * No key may repeat. NULL with no error set when anything is unusual (the registry then
 * runs every step again and reports the problem in context); NULL with an error only for
 * what is not an Exception. */
static PyObject *
fold_upcast(Folder *f, PyObject *data, PyObject *how, PyObject *decode)
{
    PyObject *value = NULL, *written = NULL, *event = NULL;
    if (!PyTuple_CheckExact(how) || PyTuple_GET_SIZE(how) != 3)
        return NULL;
    PyObject *first = PyTuple_GET_ITEM(how, 0), *steps = PyTuple_GET_ITEM(how, 1),
        *classes = PyTuple_GET_ITEM(how, 2);
    if (!PyTuple_CheckExact(steps) || !PyTuple_CheckExact(classes))
        return NULL;
    if (f->reject_duplicates
            && scan_document(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data)) != NO_DUPLICATE)
        return NULL;
    if (first != Py_None) {
        if (PyTuple_GET_SIZE(classes) != PyTuple_GET_SIZE(steps))
            return NULL;
        value = PyObject_CallOneArg(first, data);
        if (value == NULL)
            goto failed;
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(steps); i++) {
            Py_SETREF(value, PyObject_CallOneArg(PyTuple_GET_ITEM(steps, i), value));
            if (value == NULL)
                goto failed;
            if ((PyObject *)Py_TYPE(value) != PyTuple_GET_ITEM(classes, i))
                goto unusual;
        }
        return value;
    }
    value = PyObject_CallOneArg(f->lossless_decode, data);
    if (value == NULL)
        goto failed;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(steps); i++) {
        if (!PyDict_CheckExact(value))
            goto unusual;
        Py_SETREF(value, PyObject_CallOneArg(PyTuple_GET_ITEM(steps, i), value));
        if (value == NULL)
            goto failed;
    }
    if (!PyDict_CheckExact(value))
        goto unusual;
    written = PyObject_CallOneArg(f->encode, value);
    if (written == NULL)
        goto failed;
    event = PyObject_CallOneArg(decode, written);
    if (event == NULL)
        goto failed;
    Py_DECREF(value);
    Py_DECREF(written);
    return event;
failed:
    if (PyErr_ExceptionMatches(PyExc_Exception))
        PyErr_Clear();
unusual:
    Py_XDECREF(value);
    Py_XDECREF(written);
    return NULL;
}

/* The registry's hot path (current version, plain JSON, no duplicate key), else
 * rehydration._decode(raw), which decodes again and raises what is wrong. */
static PyObject *
fold_decode(Folder *f, PyObject *raw)
{
    if (f->fast_decoders == Py_None)
        return PyObject_CallOneArg(f->decode, raw);
    PyObject *type = NULL, *entry = NULL, *sv = NULL, *ct = NULL, *data = NULL,
        *steps = NULL, *event = NULL;
    int python = 1;  /* hand the event to rehydration._decode (the registry) */
    if ((type = raw_get(f, raw, F_TYPE)) == NULL || (sv = raw_get(f, raw, F_SCHEMA_VERSION))
            == NULL || (ct = raw_get(f, raw, F_CONTENT_TYPE)) == NULL
            || (data = raw_get(f, raw, F_DATA)) == NULL)
        goto error;
    /* what is not a str, an int or bytes: the registry says what is wrong with it */
    if (!PyUnicode_CheckExact(type) || !PyLong_CheckExact(sv) || !PyBytes_CheckExact(data)
            || PyBytes_GET_SIZE(data) > f->max_payload)
        goto done;
    if (ct != f->json_content_type) {
        int same = PyUnicode_CheckExact(ct) ? PyUnicode_Compare(ct, f->json_content_type)
                                            : -1;
        if (same == -1 && PyErr_Occurred())
            goto error;
        if (same != 0)
            goto done;
    }
    /* owned: a decode may run user code (an upcaster, __post_init__) that changes them */
    entry = PyDict_GetItemWithError(f->fast_decoders, type);
    if (entry == NULL) {
        if (PyErr_Occurred())
            goto error;
        goto done;
    }
    Py_INCREF(entry);
    if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 3)
        goto done;
    if (sv != PyTuple_GET_ITEM(entry, 0)) {
        int same = PyObject_RichCompareBool(sv, PyTuple_GET_ITEM(entry, 0), Py_EQ);
        if (same < 0)
            goto error;
        if (!same) {
            PyObject *upcasts = PyTuple_GET_ITEM(entry, 2);
            if (!PyDict_CheckExact(upcasts))
                goto done;
            steps = PyDict_GetItemWithError(upcasts, sv);
            if (steps == NULL) {
                if (PyErr_Occurred())
                    goto error;
                goto done;
            }
            Py_INCREF(steps);
            event = fold_upcast(f, data, steps, PyTuple_GET_ITEM(entry, 1));
            if (event == NULL && PyErr_Occurred())
                goto error;
            python = event == NULL;
            goto done;
        }
    }
    event = PyObject_CallOneArg(PyTuple_GET_ITEM(entry, 1), data);
    if (event == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_Exception))
            goto error;
        PyErr_Clear();  /* the registry decodes again and says what is wrong, in context */
        goto done;
    }
    if (f->reject_duplicates
            && scan_document(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data)) != NO_DUPLICATE) {
        Py_CLEAR(event);  /* a repeat, or cannot tell: the registry's exact check */
        goto done;
    }
    python = 0;
done:
    Py_XDECREF(type);
    Py_XDECREF(entry);
    Py_XDECREF(sv);
    Py_XDECREF(ct);
    Py_XDECREF(data);
    Py_XDECREF(steps);
    if (python)
        return PyObject_CallOneArg(f->decode, raw);
    return event;
error:
    python = 0;
    Py_CLEAR(event);
    goto done;
}

/* getattr(obj, name, <absent>) without building the AttributeError where the type allows:
 * 1 found (*out a new reference), 0 absent (*out NULL), -1 error */
static int
lookup_attr(PyObject *obj, PyObject *name, PyObject **out)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyObject_GetOptionalAttr(obj, name, out);
#else
    return _PyObject_LookupAttr(obj, name, out);
#endif
}

/* getattr(obj, name, None); a new reference, NULL on error */
static PyObject *
getattr_or_none(PyObject *obj, PyObject *name)
{
    PyObject *v;
    int found = lookup_attr(obj, name, &v);
    if (found < 0)
        return NULL;
    if (found == 0)
        Py_RETURN_NONE;
    return v;
}

/* the text of a Timestamp without a call (its _text slot) */
static PyObject *
timestamp_text(Folder *f, PyObject *ts)
{
    PyObject *text = *(PyObject **)((char *)ts + f->text_offset);
    if (text == NULL)
        return PyObject_GetAttr(ts, s_text);
    Py_INCREF(text);
    return text;
}

/* Same width, same offset (the last 6 characters), an upper-case "T", and not earlier as
 * text: then the text orders like the instant and the time needs no other check. */
static int
text_in_order(PyObject *text, PyObject *prev)
{
    if (!PyUnicode_CheckExact(text) || !PyUnicode_CheckExact(prev)
            || !PyUnicode_IS_ASCII(text) || !PyUnicode_IS_ASCII(prev))
        return 0;
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    if (n != PyUnicode_GET_LENGTH(prev) || n < 11)
        return 0;
    const char *t = (const char *)PyUnicode_DATA(text);
    const char *p = (const char *)PyUnicode_DATA(prev);
    return t[10] == 'T' && memcmp(t + n - 6, p + n - 6, 6) == 0 && memcmp(t, p, (size_t)n) >= 0;
}

/* The instant of a text timestamp_shape_ok accepts: seconds since the epoch and the
 * nanoseconds of the second (days from the civil calendar, as in H. Hinnant's
 * days_from_civil). */
static void
instant_of(const unsigned char *s, Py_ssize_t n, long long *seconds, long *nanos)
{
    long long year = two(s) * 100 + two(s + 2);
    int month = two(s + 5), day = two(s + 8);
    long long y = year - (month <= 2);
    long long era = y / 400;  /* y >= 0: years 0001-9999 */
    long long yoe = y - era * 400;
    long long doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    long long days = era * 146097 + doe - 719468;
    long long secs = days * 86400 + two(s + 11) * 3600 + two(s + 14) * 60 + two(s + 17);
    long frac = 0;
    Py_ssize_t i = 19;
    if (s[i] == '.') {
        int digits = 0;
        for (i++; i < n && is_digit(s[i]); i++, digits++)
            frac = frac * 10 + (s[i] - '0');
        for (; digits < 9; digits++)
            frac *= 10;
    }
    if (s[i] == '+' || s[i] == '-') {
        long long offset = two(s + i + 1) * 3600 + two(s + i + 4) * 60;
        secs -= s[i] == '+' ? offset : -offset;
    }
    *seconds = secs;
    *nanos = frac;
}

/* Whether the event at `text` is late on the one at `prev` by at most `tolerance_ns`,
 * decided exactly from both texts (any UTC offsets): 1 yes, 0 no or cannot tell (then
 * Python's _check_time decides, and reports). */
static int
late_within(PyObject *text, PyObject *prev, long long tolerance_ns)
{
    if (tolerance_ns < 0 || !PyUnicode_CheckExact(text) || !PyUnicode_CheckExact(prev)
            || !PyUnicode_IS_ASCII(text) || !PyUnicode_IS_ASCII(prev))
        return 0;
    const unsigned char *t = (const unsigned char *)PyUnicode_DATA(text);
    const unsigned char *p = (const unsigned char *)PyUnicode_DATA(prev);
    Py_ssize_t tn = PyUnicode_GET_LENGTH(text), pn = PyUnicode_GET_LENGTH(prev);
    if (!timestamp_shape_ok(t, tn) || !timestamp_shape_ok(p, pn))
        return 0;
    long long t_sec, p_sec;
    long t_ns, p_ns;
    instant_of(t, tn, &t_sec, &t_ns);
    instant_of(p, pn, &p_sec, &p_ns);
    long long late_sec = p_sec - t_sec;
    if (late_sec > 9000000000LL || late_sec < -9000000000LL)
        return 0;  /* centuries apart: late_sec * 1e9 would not fit */
    long long late_ns = late_sec * 1000000000LL + (p_ns - t_ns);
    return late_ns <= tolerance_ns;
}

static int
aware_datetimes_in_order(PyObject *when, PyObject *prev)
{
    if (!PyDateTime_CheckExact(when) || !PyDateTime_CheckExact(prev))
        return 0;
    if (PyDateTime_DATE_GET_TZINFO(when) == Py_None || PyDateTime_DATE_GET_TZINFO(prev) == Py_None)
        return 0;
    return PyObject_RichCompareBool(when, prev, Py_GE);  /* -1 on error */
}

/* rehydration._check_time(when, raw), given the previous time it compares with */
static int
check_time(Local *L, PyObject *r, PyObject *when, PyObject *raw)
{
    if (PyObject_SetAttr(r, s_prev_time, L->prev_time) < 0
            || PyObject_SetAttr(r, s_prev_text, L->prev_text) < 0)
        return -1;
    PyObject *args[3] = {r, when, raw};
    PyObject *res = PyObject_VectorcallMethod(s_check_time, args,
                                              3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (res == NULL)
        return -1;
    Py_DECREF(res);
    return 0;
}

static PyObject *
folder_run(Folder *f, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError,
                        "run(rehydration, events, tolerance_ns) takes 3 arguments");
        return NULL;
    }
    PyObject *r = args[0], *it = args[1];
    int overflow;
    long long tolerance = PyLong_AsLongLongAndOverflow(args[2], &overflow);
    if (tolerance == -1 && PyErr_Occurred())
        return NULL;
    if (overflow)
        tolerance = -1;  /* beyond what C compares: _check_time decides each time */
    if (!PyIter_Check(it)) {
        PyErr_SetString(PyExc_TypeError, "run() takes an iterator of events");
        return NULL;
    }
    Local L = {0};
    PyObject *agg = NULL, *raw = NULL, *version_obj = NULL, *rid = NULL, *rstream = NULL,
        *event = NULL, *when = NULL, *text = NULL, *pending = NULL, *handed_back = NULL;
    int ok;
    if ((agg = PyObject_GetAttr(r, s_aggregate)) == NULL)
        goto error;
    if ((ok = local_load(&L, r)) < 0)
        goto error;
    if (ok == 0)
        goto hand_back_nothing;
    for (;;) {
        Py_CLEAR(version_obj);
        Py_CLEAR(rid);
        Py_CLEAR(rstream);
        Py_CLEAR(event);
        Py_CLEAR(when);
        Py_CLEAR(text);
        Py_CLEAR(pending);
        Py_XSETREF(raw, PyIter_Next(it));
        if (raw == NULL) {
            if (PyErr_Occurred())
                goto error;
            break;
        }
        if (!Py_IS_TYPE(raw, f->raw_event))
            goto hand_back;
        if ((version_obj = raw_get(f, raw, F_VERSION)) == NULL)
            goto error;
        if (!PyLong_CheckExact(version_obj))
            goto hand_back;
        long long version = PyLong_AsLongLongAndOverflow(version_obj, &overflow);
        if (overflow || (version == -1 && PyErr_Occurred()) || version == LLONG_MAX) {
            PyErr_Clear();  /* (LLONG_MAX: version + 1 would not fit) */
            goto hand_back;
        }
        if ((rid = raw_get(f, raw, F_ID)) == NULL
                || (rstream = raw_get(f, raw, F_STREAM)) == NULL)
            goto error;
        if (L.adopt) {  /* the first event names the stream, as feed() does */
            if (!PyUnicode_CheckExact(rstream))
                goto feed;  /* feed() takes a str subclass, and says what else is wrong */
            if (PyObject_SetAttr(r, s_stream, rstream) < 0)
                goto error;
            Py_INCREF(rstream);
            Py_XSETREF(L.stream, rstream);
            L.adopt = 0;
            L.clean = 1;
        }
        int usual = L.clean && version == L.expected;
        if (usual && rstream != L.stream) {
            int same = PyObject_RichCompareBool(rstream, L.stream, Py_EQ);
            if (same < 0)
                goto error;
            usual = same;
        }
        if (usual) {
            if (!PyUnicode_CheckExact(rid))
                goto feed;  /* feed() takes a str subclass, and says what else is wrong */
            if (PyUnicode_GET_LENGTH(rid) != 0) {
                int repeat = PyObject_RichCompareBool(rid, L.last_id, Py_EQ);
                if (repeat < 0)
                    goto error;
                usual = !repeat;
            }
        }
        if (!usual)
            goto feed;
        event = fold_decode(f, raw);
        if (event == NULL) {
            if (!PyErr_ExceptionMatches(f->input_error))
                goto error;
            pending = fetch_exception();
            goto feed;  /* decodes again and reports it */
        }
        if (f->id_field != Py_None) {
            PyObject *theirs;
            int found = lookup_attr(event, f->id_field, &theirs);
            if (found < 0)
                goto error;
            if (found) {
                PyObject *ours = PyObject_GetAttr(agg, f->id_field);
                if (ours == NULL) {
                    Py_DECREF(theirs);
                    goto error;
                }
                int differ = 0;
                if (ours != Py_None)
                    differ = PyObject_RichCompareBool(theirs, ours, Py_NE);
                Py_DECREF(theirs);
                Py_DECREF(ours);
                if (differ < 0)
                    goto error;
                if (differ)
                    goto feed;
            }
        }
        L.synced = 0;  /* from here the fields are ahead of the rehydration */
        L.seen++;
        L.expected = version + 1;
        L.top = version;
        Py_INCREF(rid);
        Py_XSETREF(L.last_id, rid);
        if (f->time_field == Py_None) {
            when = Py_NewRef(Py_None);
        }
        else if ((when = getattr_or_none(event, f->time_field)) == NULL) {
            goto error;
        }
        if (Py_IS_TYPE(when, f->timestamp)) {
            if ((text = timestamp_text(f, when)) == NULL)
                goto error;
            int checked = L.prev_time == Py_None  /* the first time: nothing before it */
                || (L.prev_text != Py_None && (text_in_order(text, L.prev_text)
                                              || late_within(text, L.prev_text, tolerance)));
            if (!checked && check_time(&L, r, when, raw) < 0)
                goto error;
            Py_INCREF(when);
            Py_XSETREF(L.prev_time, when);
            Py_INCREF(text);
            Py_XSETREF(L.prev_text, text);
        }
        else {
            if (when == Py_None && event != f->not_decoded) {
                Py_SETREF(when, raw_get(f, raw, F_RECORDED_AT));
                if (when == NULL)
                    goto error;
            }
            if (when != Py_None) {
                int in_order = 1;
                if (L.prev_time != Py_None) {
                    if ((in_order = aware_datetimes_in_order(when, L.prev_time)) < 0)
                        goto error;
                }
                else if (!PyDateTime_CheckExact(when)
                         || PyDateTime_DATE_GET_TZINFO(when) == Py_None) {
                    /* the first time: nothing before it, but _check_time refuses a time
                       that can never be compared (a naive datetime), naming this event */
                    in_order = 0;
                }
                if (!in_order && check_time(&L, r, when, raw) < 0)
                    goto error;
                Py_INCREF(when);
                Py_XSETREF(L.prev_time, when);
                Py_INCREF(Py_None);
                Py_XSETREF(L.prev_text, Py_None);
            }
        }
        PyObject *handler = PyDict_GetItemWithError(f->handlers, (PyObject *)Py_TYPE(event));
        if (handler == NULL) {
            if (PyErr_Occurred())
                goto error;
            if (f->ignore_unhandled) {  /* _unhandled() without a violation: _applied() */
                L.applied_version = version;
                Py_INCREF(rid);
                Py_XSETREF(L.applied_id, rid);
                if (when != Py_None) {
                    Py_INCREF(when);
                    Py_XSETREF(L.applied_time, when);
                }
                continue;
            }
            if ((ok = call_slow(&L, r, s_unhandled, raw, event, when, NULL)) < 0)
                goto error;
            if (ok == 0)
                goto hand_back_nothing;
            continue;
        }
        Py_INCREF(handler);  /* ours while it runs: it may change the table */
        PyObject *hargs[2] = {agg, event};
        PyObject *res = PyObject_Vectorcall(handler, hargs, 2, NULL);
        Py_DECREF(handler);
        if (res == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_Exception))
                goto error;
            pending = fetch_exception();
            if ((ok = call_slow(&L, r, s_handler_failed, raw, event, pending, pending)) < 0)
                goto error;
            if (ok == 0)
                goto hand_back_nothing;
            continue;
        }
        Py_DECREF(res);
        L.applied++;
        L.applied_version = version;
        Py_INCREF(rid);
        Py_XSETREF(L.applied_id, rid);
        if (when != Py_None) {
            Py_INCREF(when);
            Py_XSETREF(L.applied_time, when);
        }
        if (run_invariants(f, r, agg, event, raw) < 0)
            goto error;
        continue;
feed:  /* while handling `pending`, the decode error, if that is why */
        if ((ok = call_slow(&L, r, s_feed, raw, NULL, NULL, pending)) < 0)
            goto error;
        if (ok == 0)
            goto hand_back_nothing;
    }
    if (local_store(&L, r) < 0)
        goto error;
    handed_back = Py_NewRef(Py_None);
    goto done;
hand_back:
    if (local_store(&L, r) < 0)
        goto error;
    handed_back = Py_NewRef(raw);
    goto done;
hand_back_nothing:
    /* the state no longer fits C: feed_all goes on in Python from the next event */
    handed_back = Py_NewRef(Py_NotImplemented);
done:
    Py_XDECREF(agg);
    Py_XDECREF(raw);
    Py_XDECREF(version_obj);
    Py_XDECREF(rid);
    Py_XDECREF(rstream);
    Py_XDECREF(event);
    Py_XDECREF(when);
    Py_XDECREF(text);
    Py_XDECREF(pending);
    local_clear(&L);
    return handed_back;
error:
    if (L.loaded && !L.synced) {  /* what was applied stays counted, as feed() leaves it */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        if (local_store(&L, r) < 0)
            PyErr_Clear();  /* the first error is the one to report */
        PyErr_Restore(type, value, tb);
    }
    handed_back = NULL;
    goto done;
}

static PyObject *
folder_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"decode", "fast_decoders", "lossless_decode", "encode",
                             "reject_duplicates", "max_payload",
                             "json_content_type", "handlers", "invariants", "id_field",
                             "time_field", "ignore_unhandled", "timestamp_cls", "raw_event_cls", "not_decoded",
                             "input_error", "no_event", "run_invariant", NULL};
    PyObject *decode, *fast, *lossless, *encode, *ct, *handlers, *invariants, *id_field, *time_field, *ts, *rawcls,
        *not_decoded, *input_error, *no_event, *run_invariant;
    int reject, ignore;
    Py_ssize_t max_payload;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "$OOOOpnUO!O!OOpO!O!OOOO:Folder", kwlist,
                                     &decode, &fast, &lossless, &encode, &reject, &max_payload, &ct,
                                     &PyDict_Type, &handlers, &PyDict_Type, &invariants,
                                     &id_field, &time_field, &ignore, &PyType_Type, &ts,
                                     &PyType_Type, &rawcls, &not_decoded, &input_error,
                                     &no_event, &run_invariant))
        return NULL;
    if (fast != Py_None && !PyDict_CheckExact(fast)) {
        PyErr_SetString(PyExc_TypeError, "fast_decoders must be a dict or None");
        return NULL;
    }
    if ((id_field != Py_None && !PyUnicode_Check(id_field))
            || (time_field != Py_None && !PyUnicode_Check(time_field))) {
        PyErr_SetString(PyExc_TypeError, "id_field and time_field are str or None");
        return NULL;
    }
    if (!PyExceptionClass_Check(input_error)) {
        PyErr_SetString(PyExc_TypeError, "input_error must be an exception class");
        return NULL;
    }
    Py_ssize_t text_offset = slot_offset((PyTypeObject *)ts, "_text");
    if (text_offset < 0)
        return NULL;
    Py_ssize_t raw_offsets[N_RAW_FIELDS];
    for (int i = 0; i < N_RAW_FIELDS; i++) {
        if ((raw_offsets[i] = slot_offset((PyTypeObject *)rawcls, RAW_FIELDS[i])) < 0)
            return NULL;
    }
    Folder *self = (Folder *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->decode = Py_NewRef(decode);
    self->fast_decoders = Py_NewRef(fast);
    self->lossless_decode = Py_NewRef(lossless);
    self->encode = Py_NewRef(encode);
    self->reject_duplicates = reject;
    self->max_payload = max_payload;
    self->json_content_type = Py_NewRef(ct);
    self->handlers = Py_NewRef(handlers);
    self->invariants = Py_NewRef(invariants);
    self->id_field = Py_NewRef(id_field);
    self->time_field = Py_NewRef(time_field);
    self->ignore_unhandled = ignore;
    self->timestamp = (PyTypeObject *)Py_NewRef(ts);
    self->text_offset = text_offset;
    self->raw_event = (PyTypeObject *)Py_NewRef(rawcls);
    memcpy(self->raw_offsets, raw_offsets, sizeof(raw_offsets));
    self->not_decoded = Py_NewRef(not_decoded);
    self->input_error = Py_NewRef(input_error);
    self->no_event = Py_NewRef(no_event);
    self->run_invariant = Py_NewRef(run_invariant);
    return (PyObject *)self;
}

static int
folder_traverse(Folder *self, visitproc visit, void *arg)
{
    Py_VISIT(self->decode);
    Py_VISIT(self->fast_decoders);
    Py_VISIT(self->lossless_decode);
    Py_VISIT(self->encode);
    Py_VISIT(self->json_content_type);
    Py_VISIT(self->handlers);
    Py_VISIT(self->invariants);
    Py_VISIT(self->id_field);
    Py_VISIT(self->time_field);
    Py_VISIT(self->timestamp);
    Py_VISIT(self->raw_event);
    Py_VISIT(self->not_decoded);
    Py_VISIT(self->input_error);
    Py_VISIT(self->no_event);
    Py_VISIT(self->run_invariant);
    return 0;
}

static int
folder_clear(Folder *self)
{
    Py_CLEAR(self->decode);
    Py_CLEAR(self->fast_decoders);
    Py_CLEAR(self->lossless_decode);
    Py_CLEAR(self->encode);
    Py_CLEAR(self->json_content_type);
    Py_CLEAR(self->handlers);
    Py_CLEAR(self->invariants);
    Py_CLEAR(self->id_field);
    Py_CLEAR(self->time_field);
    Py_CLEAR(self->timestamp);
    Py_CLEAR(self->raw_event);
    Py_CLEAR(self->not_decoded);
    Py_CLEAR(self->input_error);
    Py_CLEAR(self->no_event);
    Py_CLEAR(self->run_invariant);
    return 0;
}

static void
folder_dealloc(Folder *self)
{
    PyObject_GC_UnTrack(self);
    folder_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef folder_methods[] = {
    {"run", (PyCFunction)(void (*)(void))folder_run, METH_FASTCALL,
     "run(rehydration, events, tolerance_ns) -> None when the events are exhausted, else "
     "the event "
     "handed back to feed_all's Python loop (NotImplemented: from the next event on)"},
    {NULL}
};

static PyTypeObject FolderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "evtools._speedups.Folder",
    .tp_basicsize = sizeof(Folder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The common case of Rehydration.feed_all in C (see evtools/_speedups.c).",
    .tp_new = folder_new,
    .tp_dealloc = (destructor)folder_dealloc,
    .tp_traverse = (traverseproc)folder_traverse,
    .tp_clear = (inquiry)folder_clear,
    .tp_methods = folder_methods,
};

static int
intern_names(void)
{
    struct { PyObject **slot; const char *text; } names[] = {
        {&s_stream, "stream"},
        {&s_expected, "expected"}, {&s_max_seen, "_max_seen"}, {&s_last_id, "_last_id"},
        {&s_prev_time, "_prev_time"}, {&s_prev_text, "_prev_text"},
        {&s_events_seen, "events_seen"}, {&s_events_applied, "events_applied"},
        {&s_applied_version, "_applied_version"}, {&s_applied_id, "_applied_id"},
        {&s_applied_time, "_applied_time"}, {&s_buffer, "_buffer"},
        {&s_halted_at, "halted_at"}, {&s_verify, "_verify"}, {&s_in_prefix, "_in_prefix"},
        {&s_aggregate, "aggregate"}, {&s_feed, "feed"}, {&s_check_time, "_check_time"},
        {&s_unhandled, "_unhandled"}, {&s_handler_failed, "_handler_failed"},
        {&s_invariant_violated, "_invariant_violated"}, {&s_text, "_text"},
        {&s_is_finite, "is_finite"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if ((*names[i].slot = PyUnicode_InternFromString(names[i].text)) == NULL)
            return -1;
    }
    return 0;
}

/* -- finite decimals ---------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *decode;   /* msgspec's Decoder.decode */
    PyObject *getters;  /* tuple: each reads a Decimal or None from the decoded value */
    PyObject *check;    /* the rest of the test (containers, unions), or None */
    PyObject *refuse;   /* raises the error that names the field (or returns the value) */
    PyTypeObject *decimal;  /* decimal.Decimal: anything else a getter reads is let be */
    vectorcallfunc vectorcall;
} FiniteDecode;

/* 1: every Decimal the value holds is finite; 0: not (or a getter or the check failed,
 * for refuse to explain); -1: an error that is not an Exception */
static int
finite_ok(FiniteDecode *self, PyObject *value)
{
    Py_ssize_t n = PyTuple_GET_SIZE(self->getters);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *found = PyObject_CallOneArg(PyTuple_GET_ITEM(self->getters, i), value);
        if (found == NULL)
            goto failed;
        if (!Py_IS_TYPE(found, self->decimal)) {  /* None, UNSET, DecimalText... */
            Py_DECREF(found);
            continue;
        }
        PyObject *ok = PyObject_CallMethodNoArgs(found, s_is_finite);
        Py_DECREF(found);
        if (ok == NULL)
            goto failed;
        Py_DECREF(ok);
        if (ok != Py_True)
            return 0;
    }
    if (self->check != Py_None) {
        PyObject *ok = PyObject_CallOneArg(self->check, value);
        if (ok == NULL)
            goto failed;
        Py_DECREF(ok);
        if (ok != Py_True)
            return 0;
    }
    return 1;
failed:
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return -1;
    PyErr_Clear();
    return 0;
}

static PyObject *
finite_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    FiniteDecode *self = (FiniteDecode *)callable;
    PyObject *value = PyObject_Vectorcall(self->decode, args, nargsf, kwnames);
    if (value == NULL)
        return NULL;
    int ok = finite_ok(self, value);
    if (ok > 0)
        return value;
    PyObject *r = ok == 0 ? PyObject_CallOneArg(self->refuse, value) : NULL;
    Py_DECREF(value);
    return r;  /* refuse raised, or its walk found nothing wrong: the value */
}

static PyObject *
finite_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *decode, *getters, *check, *refuse, *decimal;
    static char *kwlist[] = {"decode", "getters", "check", "refuse", "decimal_cls", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO!OOO!:FiniteDecode", kwlist, &decode,
                                     &PyTuple_Type, &getters, &check, &refuse,
                                     &PyType_Type, &decimal))
        return NULL;
    if (!PyCallable_Check(decode) || !PyCallable_Check(refuse)
            || (check != Py_None && !PyCallable_Check(check))) {
        PyErr_SetString(PyExc_TypeError, "decode, check (or None) and refuse must be callable");
        return NULL;
    }
    FiniteDecode *self = (FiniteDecode *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->decode = Py_NewRef(decode);
    self->getters = Py_NewRef(getters);
    self->check = Py_NewRef(check);
    self->refuse = Py_NewRef(refuse);
    self->decimal = (PyTypeObject *)Py_NewRef(decimal);
    self->vectorcall = finite_vectorcall;
    return (PyObject *)self;
}

static int
finite_traverse(FiniteDecode *self, visitproc visit, void *arg)
{
    Py_VISIT(self->decode);
    Py_VISIT(self->getters);
    Py_VISIT(self->check);
    Py_VISIT(self->refuse);
    Py_VISIT(self->decimal);
    return 0;
}

static int
finite_clear(FiniteDecode *self)
{
    Py_CLEAR(self->decode);
    Py_CLEAR(self->getters);
    Py_CLEAR(self->check);
    Py_CLEAR(self->refuse);
    Py_CLEAR(self->decimal);
    return 0;
}

static void
finite_dealloc(FiniteDecode *self)
{
    PyObject_GC_UnTrack(self);
    finite_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject FiniteDecodeType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "evtools._speedups.FiniteDecode",
    .tp_basicsize = sizeof(FiniteDecode),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "FiniteDecode(decode, getters, check, refuse, decimal_cls): decode(data), "
              "refusing a non-finite Decimal through refuse(value) (evtools/_decimals.py).",
    .tp_new = finite_new,
    .tp_dealloc = (destructor)finite_dealloc,
    .tp_traverse = (traverseproc)finite_traverse,
    .tp_clear = (inquiry)finite_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(FiniteDecode, vectorcall),
};

/* -- module ------------------------------------------------------------------------------- */

static PyMethodDef methods[] = {
    {"duplicate_key", duplicate_key, METH_O,
     "duplicate_key(data) -> True/False when certain that some object of the JSON document "
     "repeats a key / none does, None when it cannot tell cheaply"},
    {"timestamp_shape", timestamp_shape, METH_O,
     "timestamp_shape(text) -> whether TimestampHook's fast path accepts text"},
    {"rows_look_right", (PyCFunction)(void (*)(void))rows_look_right, METH_FASTCALL,
     "rows_look_right(rows, with_stream) -> whether every row of a SQLite store page holds "
     "the types its schema says (False: check the page row by row)"},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "evtools._speedups",
    .m_doc = "Hot-path checks of the typed decode in C; evtools falls back to Python "
             "without them.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL || intern_names() < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddType(m, &TimestampHookType) < 0 || PyModule_AddType(m, &FolderType) < 0
            || PyModule_AddType(m, &FiniteDecodeType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
