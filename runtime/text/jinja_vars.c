/*
 * runtime/text/jinja_vars.c — the variables a render sees, built from JSON
 * text and plain values.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/text/jinja_internal.h"

loom_status loom_jinja_vars_create(loom_jinja_vars **out) {
    *out = NULL;
    loom_jinja_vars *v = calloc(1, sizeof *v);
    if (!v) return loom_error(LOOM_ERR_NOMEM, "template variables: out of memory");
    v->vars = jd_new(&v->arena, 8);
    if (!v->vars) {
        loom_jinja_vars_free(v);
        return loom_error(LOOM_ERR_NOMEM, "template variables: out of memory");
    }
    *out = v;
    return NULL;
}

void loom_jinja_vars_free(loom_jinja_vars *v) {
    if (!v) return;
    ja_free(&v->arena);
    free(v);
}

static loom_status set(loom_jinja_vars *v, const char *name, jv value) {
    size_t n = strlen(name);
    char *k = ja_strndup(&v->arena, name, n);
    if (!k || !jd_set(&v->arena, v->vars, jv_strv(k, (uint32_t)n, 0), value))
        return loom_error(LOOM_ERR_NOMEM, "template variables: out of memory setting '%s'", name);
    return NULL;
}

static loom_status parse(loom_jinja_vars *v, const char *what, const char *json, size_t len, jv *out) {
    char err[256];
    if (!jjson_parse(&v->arena, json, len, out, err, sizeof err))
        return loom_error(v->arena.over ? LOOM_ERR_NOMEM : LOOM_ERR_INVALID, "%s: invalid JSON: %s", what, err);
    return NULL;
}

loom_status loom_jinja_vars_set_json(loom_jinja_vars *v, const char *name, const char *json, size_t len) {
    jv value;
    LOOM_TRY(parse(v, name, json, len, &value));
    return set(v, name, value);
}

loom_status loom_jinja_vars_set_object(loom_jinja_vars *v, const char *json, size_t len) {
    jv value;
    LOOM_TRY(parse(v, "variables", json, len, &value));
    if (value.t != JV_DICT) return loom_error(LOOM_ERR_INVALID, "variables: expected a JSON object, got %s", jv_type_name(value));
    for (uint32_t i = 0; i < value.u.d->n; i++)
        if (!jd_set(&v->arena, v->vars, value.u.d->k[i], value.u.d->v[i]))
            return loom_error(LOOM_ERR_NOMEM, "template variables: out of memory");
    return NULL;
}

loom_status loom_jinja_vars_set_str(loom_jinja_vars *v, const char *name, const char *s, size_t len) {
    if (!loom_utf8_valid(s, len)) return loom_error(LOOM_ERR_INVALID, "%s: not valid UTF-8", name);
    char *c = ja_strndup(&v->arena, s, len);
    if (!c) return loom_error(LOOM_ERR_NOMEM, "template variables: out of memory setting '%s'", name);
    return set(v, name, jv_strv(c, (uint32_t)len, 0));
}

loom_status loom_jinja_vars_set_bool(loom_jinja_vars *v, const char *name, bool b) { return set(v, name, jv_bool(b)); }
loom_status loom_jinja_vars_set_none(loom_jinja_vars *v, const char *name) { return set(v, name, jv_none()); }

bool loom_jinja_vars_has(const loom_jinja_vars *v, const char *name) {
    jv dummy;
    return jd_get_str(v->vars, name, strlen(name), &dummy);
}

/* transformers 5's _alias_reasoning_fields:
 * {"thinking": r, **message, "reasoning_content": r} */
static const char *const REASONING[] = {"reasoning_content", "thinking", "reasoning"};

/* The text of a content list whose parts are all {"type": "text", "text": s},
 * joined by newlines: 1 (*out set), 0 when some part is not such a text
 * part, -1 out of memory. */
static int text_parts_joined(jarena *a, const jlist *parts, jv *out) {
    size_t n = 0;
    for (uint32_t k = 0; k < parts->n; k++) {
        jv p = parts->v[k], type, text;
        if (p.t != JV_DICT || !jd_get_str(p.u.d, "type", 4, &type) || type.t != JV_STR || type.n != 4 ||
            memcmp(type.u.s, "text", 4) != 0 || !jd_get_str(p.u.d, "text", 4, &text) || text.t != JV_STR)
            return 0;
        n += text.n + (k > 0);
    }
    char *s = n < UINT32_MAX ? ja_alloc(a, n + 1) : NULL;
    if (!s) return -1;
    size_t at = 0;
    for (uint32_t k = 0; k < parts->n; k++) {
        jv text;
        jd_get_str(parts->v[k].u.d, "text", 4, &text);
        if (k > 0) s[at++] = '\n';
        memcpy(s + at, text.u.s, text.n);
        at += text.n;
    }
    *out = jv_strv(s, (uint32_t)n, 0);
    return 1;
}

loom_status loom_jinja_vars_set_messages(loom_jinja_vars *v, const char *json, size_t len, bool join_text_parts) {
    jv msgs;
    LOOM_TRY(parse(v, "messages", json, len, &msgs));
    if (msgs.t != JV_LIST) return loom_error(LOOM_ERR_INVALID, "messages: expected a JSON array, got %s", jv_type_name(msgs));
    jarena *a = &v->arena;
    for (uint32_t i = 0; i < msgs.u.l->n; i++) {
        jv m = msgs.u.l->v[i];
        if (m.t != JV_DICT)
            return loom_error(LOOM_ERR_INVALID, "messages[%u]: chat messages should be objects, got %s", i, jv_type_name(m));
        jv content, text;
        if (join_text_parts && jd_get_str(m.u.d, "content", 7, &content) && content.t == JV_LIST) {
            const int r = text_parts_joined(a, content.u.l, &text);
            if (r < 0 || (r > 0 && !jd_set(a, m.u.d, jv_strv("content", 7, 0), text)))
                return loom_error(LOOM_ERR_NOMEM, "messages: out of memory");
        }
        jv r = jv_none();
        for (int k = 0; k < 3 && r.t == JV_NONE; k++) {
            jv f;
            if (jd_get_str(m.u.d, REASONING[k], strlen(REASONING[k]), &f) && f.t != JV_NONE) r = f;
        }
        if (r.t == JV_NONE) continue;
        jdict *d = jd_new(a, m.u.d->n + 2);
        if (!d || !jd_set(a, d, jv_strv("thinking", 8, 0), r)) return loom_error(LOOM_ERR_NOMEM, "messages: out of memory");
        for (uint32_t k = 0; k < m.u.d->n; k++)
            if (!jd_set(a, d, m.u.d->k[k], m.u.d->v[k])) return loom_error(LOOM_ERR_NOMEM, "messages: out of memory");
        if (!jd_set(a, d, jv_strv("reasoning_content", 17, 0), r)) return loom_error(LOOM_ERR_NOMEM, "messages: out of memory");
        msgs.u.l->v[i] = jv_dict(d);
    }
    return set(v, "messages", msgs);
}
