/*
 * runtime/json_prefix.c — a byte automaton for prefixes of a JSON object
 * (contract in json_prefix.h).
 */
#include "runtime/json_prefix.h"

enum {
    ROOT,      /* the object's '{' */
    VALUE,     /* a value (after ':' or an array's ',') */
    OBJ_FIRST, /* after '{': a key or '}' */
    OBJ_KEY,   /* after an object's ',': a key */
    COLON,     /* after a key */
    AFTER,     /* after a value in a container: ',' or its closer */
    ARR_FIRST, /* after '[': a value or ']' */
    STR,
    STR_ESC,
    STR_U,
    NUM_MINUS, /* '-': a digit must follow */
    NUM_ZERO,  /* a leading 0: '.', an exponent or the end */
    NUM_INT,
    NUM_DOT,   /* '.': a digit must follow */
    NUM_FRAC,
    NUM_E,     /* 'e': a sign or a digit */
    NUM_ESIGN, /* a digit */
    NUM_EXP,
    LIT,
    DONE,
};

static const char *const LITERALS[3] = {"true", "false", "null"};
static const uint8_t LITERAL_LEN[3] = {4, 5, 4};

void loom_json_init(loom_json_state *s) { *s = (loom_json_state){.st = ROOT}; }

bool loom_json_complete(const loom_json_state *s) { return s->st == DONE; }

static bool is_ws(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
static bool top_is_array(const loom_json_state *s) { return s->arrays >> (s->depth - 1) & 1; }

static void value_done(loom_json_state *s) { s->st = s->depth == 0 ? DONE : AFTER; }

static bool open_container(loom_json_state *s, bool array) {
    if (s->depth == LOOM_JSON_MAX_DEPTH) return false;
    s->arrays = array ? s->arrays | 1ull << s->depth : s->arrays & ~(1ull << s->depth);
    s->depth++;
    s->st = array ? ARR_FIRST : OBJ_FIRST;
    return true;
}

static bool close_container(loom_json_state *s, bool array) {
    if (s->depth == 0 || top_is_array(s) != array) return false;
    s->depth--;
    value_done(s);
    return true;
}

static bool begin_value(loom_json_state *s, char c) {
    switch (c) {
    case '{': return open_container(s, false);
    case '[': return open_container(s, true);
    case '"': s->st = STR, s->key = false; return true;
    case '-': s->st = NUM_MINUS; return true;
    case '0': s->st = NUM_ZERO; return true;
    case 't': case 'f': case 'n':
        s->st = LIT, s->lit = c == 't' ? 0 : c == 'f' ? 1 : 2, s->sub = 1;
        return true;
    default:
        if (c >= '1' && c <= '9') {
            s->st = NUM_INT;
            return true;
        }
        return false;
    }
}

/* One byte in a state between tokens (whitespace allowed). */
static bool structural(loom_json_state *s, char c) {
    if (s->st == DONE) return false; /* nothing may follow, whitespace neither */
    if (is_ws(c)) return ++s->ws <= LOOM_JSON_MAX_WS;
    s->ws = 0;
    switch (s->st) {
    case ROOT: return c == '{' && open_container(s, false);
    case VALUE: return begin_value(s, c);
    case ARR_FIRST: return c == ']' ? close_container(s, true) : begin_value(s, c);
    case OBJ_FIRST:
        if (c == '}') return close_container(s, false);
        /* fall through */
    case OBJ_KEY:
        if (c != '"') return false;
        s->st = STR, s->key = true;
        return true;
    case COLON:
        if (c != ':') return false;
        s->st = VALUE;
        return true;
    case AFTER:
        if (c == ',') {
            s->st = top_is_array(s) ? VALUE : OBJ_KEY;
            return true;
        }
        return (c == ']' || c == '}') && close_container(s, c == ']');
    default: return false;
    }
}

/* A number ends at a byte that cannot continue it: the value is done and
 * the byte is read after it. */
static bool end_number(loom_json_state *s, char c) {
    value_done(s);
    return structural(s, c);
}

static bool step(loom_json_state *s, char c) {
    switch (s->st) {
    case STR:
        if (c == '"') {
            if (s->key) s->st = COLON;
            else value_done(s);
        } else if (c == '\\') {
            s->st = STR_ESC;
        } else if ((unsigned char)c < 0x20) {
            return false;
        }
        return true;
    case STR_ESC:
        if (c == 'u') {
            s->st = STR_U, s->sub = 4;
            return true;
        }
        s->st = STR;
        return c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' || c == 't';
    case STR_U:
        if (!is_hex(c)) return false;
        if (--s->sub == 0) s->st = STR;
        return true;
    case NUM_MINUS:
        if (!is_digit(c)) return false;
        s->st = c == '0' ? NUM_ZERO : NUM_INT;
        return true;
    case NUM_ZERO:
    case NUM_INT:
        if (is_digit(c) && s->st == NUM_INT) return true;
        if (c == '.') s->st = NUM_DOT;
        else if (c == 'e' || c == 'E') s->st = NUM_E;
        else return end_number(s, c);
        return true;
    case NUM_DOT:
        if (!is_digit(c)) return false;
        s->st = NUM_FRAC;
        return true;
    case NUM_FRAC:
        if (is_digit(c)) return true;
        if (c == 'e' || c == 'E') {
            s->st = NUM_E;
            return true;
        }
        return end_number(s, c);
    case NUM_E:
        if (c == '+' || c == '-') {
            s->st = NUM_ESIGN;
            return true;
        }
        /* fall through */
    case NUM_ESIGN:
        if (!is_digit(c)) return false;
        s->st = NUM_EXP;
        return true;
    case NUM_EXP: return is_digit(c) ? true : end_number(s, c);
    case LIT:
        if (c != LITERALS[s->lit][s->sub]) return false;
        if (++s->sub == LITERAL_LEN[s->lit]) value_done(s);
        return true;
    default: return structural(s, c);
    }
}

bool loom_json_feed(loom_json_state *s, const char *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!step(s, b[i])) return false;
    return true;
}
