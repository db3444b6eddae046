// sqlite: a loop of sqlite transactions (a rollback journal file comes and
// goes) runs right up to the checkpoint; after the restore the database
// holds exactly the rows the process counted, passes integrity_check and
// takes more transactions. Built with -lsqlite3.
#include "fdcorpus.h"
#include <sqlite3.h>

static sqlite3 *db;
static long committed;

static void tx(long i) {
  char sql[256];
  snprintf(sql, sizeof sql, "BEGIN; INSERT INTO t(id, v) VALUES (%ld, 'row-%ld'); UPDATE c SET n = n + 1; COMMIT;", i, i);
  char *err = NULL;
  CHECK(sqlite3_exec(db, sql, NULL, NULL, &err) == SQLITE_OK, "tx %ld: %s", i, err ? err : "");
  committed = i;
}

static long one(const char *sql) {
  sqlite3_stmt *st;
  CHECK(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK, "prepare %s", sql);
  CHECK(sqlite3_step(st) == SQLITE_ROW, "step %s", sql);
  long v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

int main(void) {
  corpus_setup("sqlite");
  char *dir = corpus_dir();
  char path[256];
  snprintf(path, sizeof path, "%s/db.sqlite", dir);
  CHECK(sqlite3_open(path, &db) == SQLITE_OK, "open");
  CHECK(sqlite3_exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE c(n INTEGER); INSERT INTO c VALUES (0);",
                     NULL, NULL, NULL) == SQLITE_OK, "schema");
  long i = 1;
  for (; i <= 100; i++) tx(i);
  printf("READY\n");
  for (int k = 0; !corpus_go; k++) { // keep transactions running until the check
    if (k > 60000) { printf("FAIL sqlite: no SIGUSR2 within 60 s\n"); exit(1); }
    tx(i++);
    usleep(1000);
  }
  CHECK(one("SELECT count(*) FROM t") == committed, "rows %ld, committed %ld", one("SELECT count(*) FROM t"), committed);
  CHECK(one("SELECT n FROM c") == committed, "counter %ld, committed %ld", one("SELECT n FROM c"), committed);
  sqlite3_stmt *st;
  CHECK(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW, "integrity");
  CHECK(!strcmp((const char *)sqlite3_column_text(st, 0), "ok"), "integrity_check: %s", sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  for (int k = 0; k < 10; k++) tx(i++);
  CHECK(one("SELECT count(*) FROM t") == committed, "rows after more transactions");
  sqlite3_close(db);
  unlink(path);
  rmdir(dir);
  corpus_pass();
}
