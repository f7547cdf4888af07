/*
 * tests/template_corpus.c — every chat template of llama.cpp's
 * models/templates/ over every conversation of
 * tests/fixtures/templates/conversations/, rendered by `loom template` and
 * compared byte for byte with what transformers + jinja2 rendered
 * (tests/fixtures/gen_templates.py wrote tests/fixtures/templates/expected/).
 *
 *   template_corpus LOOM FIXTURE_DIR TEMPLATE_DIR
 *
 * Where jinja2 raised, `loom template` must fail too, and where the
 * template raised its own error (raise_exception) loom's message must
 * contain jinja2's. Prints "N of M match", one line per mismatch with its
 * reason, and exits 0 only when all match.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

typedef struct {
    char *data;
    size_t len;
} blob;

static int read_all(const char *path, blob *b) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t cap = 4096;
    b->data = malloc(cap);
    b->len = 0;
    size_t k;
    while (b->data && (k = fread(b->data + b->len, 1, cap - b->len, f)) > 0) {
        b->len += k;
        if (b->len == cap) b->data = realloc(b->data, cap *= 2);
    }
    fclose(f);
    return b->data ? 0 : -1;
}

static uint64_t fnv1a64(const blob *b) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < b->len; i++) h = (h ^ (unsigned char)b->data[i]) * 0x100000001B3ull;
    return h;
}

/* Runs argv in dir with stdout / stderr into files; returns the exit status (-1: not run). */
static int run(char **argv, const char *dir, const char *out_path, const char *err_path) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addchdir_np(&fa, dir);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) return -1;
    int status;
    if (waitpid(pid, &status, 0) < 0) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* Where a and b first differ, for the report. */
static void describe_diff(const char *want, size_t wn, const char *got, size_t gn, char *out, size_t outn) {
    size_t i = 0;
    while (i < wn && i < gn && want[i] == got[i]) i++;
    size_t from = i > 30 ? i - 30 : 0;
    char w[160], g[160];
    size_t k = 0;
    for (size_t j = from; j < wn && j < i + 40 && k + 4 < sizeof w; j++) {
        unsigned char c = (unsigned char)want[j];
        k += (size_t)snprintf(w + k, sizeof w - k, c == '\n' ? "\\n" : c < 0x20 ? "?" : "%c", c);
    }
    w[k] = 0;
    k = 0;
    for (size_t j = from; j < gn && j < i + 40 && k + 4 < sizeof g; j++) {
        unsigned char c = (unsigned char)got[j];
        k += (size_t)snprintf(g + k, sizeof g - k, c == '\n' ? "\\n" : c < 0x20 ? "?" : "%c", c);
    }
    g[k] = 0;
    snprintf(out, outn, "output differs at byte %zu (lengths %zu / %zu):\n      want ...%s\n      got  ...%s", i, wn, gn,
             w, g);
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s LOOM FIXTURE_DIR TEMPLATE_DIR\n", argv[0]);
        return 2;
    }
    /* absolute paths: loom runs in FIXTURE_DIR, where the arguments' paths start */
    char *loom = realpath(argv[1], NULL), *tdir = realpath(argv[3], NULL);
    const char *fix = argv[2];
    if (!loom || !tdir) {
        fprintf(stderr, "cannot find %s: %s\n", loom ? argv[3] : argv[1],
                loom ? "run launch/fetch-model.sh --vocab" : "build loom first");
        return 1;
    }
    char path[4096], out_path[256], err_path[256];
    snprintf(out_path, sizeof out_path, "/tmp/loom-template-corpus-%d.out", (int)getpid());
    snprintf(err_path, sizeof err_path, "/tmp/loom-template-corpus-%d.err", (int)getpid());
    snprintf(path, sizeof path, "%s/expected", fix);
    DIR *d = opendir(path);
    if (!d) {
        fprintf(stderr, "cannot open %s\n", path);
        return 1;
    }
    char **names = NULL;
    size_t nn = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t l = strlen(e->d_name);
        if (l > 5 && !strcmp(e->d_name + l - 5, ".json")) {
            names = realloc(names, (nn + 1) * sizeof *names);
            names[nn++] = strdup(e->d_name);
        }
    }
    closedir(d);
    qsort(names, nn, sizeof *names, cmp_names);
    int total = 0, ok = 0, templates_ok = 0;
    for (size_t t = 0; t < nn; t++) {
        snprintf(path, sizeof path, "%s/expected/%s", fix, names[t]);
        json_error_t jerr;
        json_t *doc = json_load_file(path, 0, &jerr);
        if (!doc) {
            printf("FAIL %s: %s\n", names[t], jerr.text);
            total++;
            continue;
        }
        const char *tname = json_string_value(json_object_get(doc, "template"));
        const char *fnv = json_string_value(json_object_get(doc, "fnv1a64"));
        const char *now = json_string_value(json_object_get(doc, "now"));
        json_t *cases = json_object_get(doc, "cases");
        char tpath[4096];
        snprintf(tpath, sizeof tpath, "%s/%s", tdir, tname ? tname : "?");
        blob src = {0};
        const char *bad = NULL;
        char fnvbuf[32];
        if (!tname || !fnv || !now || !json_is_array(cases)) bad = "malformed fixture";
        else if (read_all(tpath, &src) != 0) bad = "template file missing (run launch/fetch-model.sh --vocab)";
        else if (snprintf(fnvbuf, sizeof fnvbuf, "%016llx", (unsigned long long)fnv1a64(&src)), strcmp(fnvbuf, fnv))
            bad = "the template file differs from the one the fixtures were made from";
        free(src.data);
        setenv("LOOM_TEMPLATE_NOW", now ? now : "", 1);
        size_t i;
        json_t *c;
        int tmpl_ok = 0, tmpl_n = 0;
        json_array_foreach(cases, i, c) {
            total++;
            tmpl_n++;
            const char *cid = json_string_value(json_object_get(c, "case"));
            if (bad) {
                printf("MISMATCH %s [%s]: %s\n", tname, cid, bad);
                continue;
            }
            json_t *args = json_object_get(c, "args");
            size_t na = json_array_size(args);
            char **av = calloc(na + 5, sizeof *av);
            av[0] = (char *)loom;
            av[1] = "template";
            av[2] = "--template";
            av[3] = tpath;
            for (size_t k = 0; k < na; k++) av[4 + k] = (char *)json_string_value(json_array_get(args, k));
            int rc = run(av, fix, out_path, err_path);
            free(av);
            blob got = {0}, err = {0};
            read_all(out_path, &got);
            read_all(err_path, &err);
            if (err.data) err.data = realloc(err.data, err.len + 1), err.data[err.len] = 0;
            json_t *want = json_object_get(c, "output");
            json_t *werr = json_object_get(c, "error");
            char why[1024] = "";
            if (rc < 0 || rc >= 128) {
                snprintf(why, sizeof why, "loom did not run or crashed (status %d): %.300s", rc, err.data ? err.data : "");
            } else if (want) {
                const char *w = json_string_value(want);
                size_t wn = json_string_length(want);
                if (rc != 0)
                    snprintf(why, sizeof why, "loom failed where jinja2 rendered: %.400s", err.data ? err.data : "");
                else if (wn != got.len || memcmp(w, got.data, wn))
                    describe_diff(w, wn, got.data ? got.data : "", got.len, why, sizeof why);
            } else if (werr) {
                const char *type = json_string_value(json_object_get(werr, "type"));
                const char *msg = json_string_value(json_object_get(werr, "message"));
                if (rc == 0)
                    snprintf(why, sizeof why, "loom rendered where jinja2 raised %s: %.300s", type ? type : "?", msg ? msg : "");
                else if (type && !strcmp(type, "TemplateError") && msg && (!err.data || !strstr(err.data, msg)))
                    snprintf(why, sizeof why, "the template's own error differs: want '%.200s', got '%.300s'", msg,
                             err.data ? err.data : "");
            } else {
                snprintf(why, sizeof why, "malformed case");
            }
            if (why[0]) {
                printf("MISMATCH %s [%s]: %s\n", tname, cid, why);
            } else {
                ok++;
                tmpl_ok++;
            }
            free(got.data);
            free(err.data);
        }
        templates_ok += tmpl_n > 0 && tmpl_ok == tmpl_n;
        json_decref(doc);
        free(names[t]);
    }
    free(names);
    free(loom);
    free(tdir);
    unlink(out_path);
    unlink(err_path);
    printf("templates: %d of %zu render every conversation as jinja2 does\n", templates_ok, nn);
    printf("%d of %d match\n", ok, total);
    return ok == total && total > 0 ? 0 : 1;
}
