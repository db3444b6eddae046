/*
 * sqliteloop: a program that loops over sqlite transactions, for the
 * snapshot engine's end-to-end proof (tests/snapshot_servers_test.go).
 *
 *   sqliteloop DB [EVERY [MAX]]   loop: BEGIN; INSERT a row; UPDATE the
 *                                 checksum row; COMMIT. Prints
 *                                 "progress N" every EVERY transactions
 *                                 (default 200) and stops after MAX
 *                                 (default 50,000,000: bounded).
 *   sqliteloop --check DB         verify the database: integrity_check is
 *                                 "ok" and the checksum row matches the
 *                                 rows. Prints "OK rows=N sum=S" (exit 0)
 *                                 or "BAD ..." (exit 1).
 *
 * Correctness never rests on the process's own counter: rows get their
 * value from the process's counter, but the checksum row is updated with
 * the same value in the same transaction, so the database is consistent
 * whatever the counter was when the process was restored.
 *
 * Build: gcc -O1 -Wall -o sqliteloop sqliteloop.c -lsqlite3
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void die(sqlite3 *db, const char *what) {
	printf("BAD %s: %s\n", what, db ? sqlite3_errmsg(db) : "?");
	fflush(stdout);
	exit(1);
}

static void exec_or_die(sqlite3 *db, const char *sql) {
	char *err = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
		printf("BAD exec %s: %s\n", sql, err ? err : "?");
		fflush(stdout);
		exit(1);
	}
}

static int check(const char *path) {
	sqlite3 *db;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
		die(db, "open");
	sqlite3_busy_timeout(db, 5000);
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) != SQLITE_OK)
		die(db, "prepare integrity_check");
	if (sqlite3_step(st) != SQLITE_ROW)
		die(db, "integrity_check");
	const char *ic = (const char *)sqlite3_column_text(st, 0);
	if (!ic || strcmp(ic, "ok") != 0) {
		printf("BAD integrity_check: %s\n", ic ? ic : "(null)");
		return 1;
	}
	sqlite3_finalize(st);

	long long rows = -1, sum = -1, ccount = -2, csum = -2;
	if (sqlite3_prepare_v2(db, "SELECT count(*), coalesce(sum(v),0) FROM rows", -1, &st, NULL) != SQLITE_OK)
		die(db, "prepare count");
	if (sqlite3_step(st) != SQLITE_ROW)
		die(db, "count");
	rows = sqlite3_column_int64(st, 0);
	sum = sqlite3_column_int64(st, 1);
	sqlite3_finalize(st);
	if (sqlite3_prepare_v2(db, "SELECT count, total FROM checksum WHERE id = 1", -1, &st, NULL) != SQLITE_OK)
		die(db, "prepare checksum");
	if (sqlite3_step(st) != SQLITE_ROW)
		die(db, "no checksum row");
	ccount = sqlite3_column_int64(st, 0);
	csum = sqlite3_column_int64(st, 1);
	sqlite3_finalize(st);
	sqlite3_close(db);
	if (rows != ccount || sum != csum) {
		printf("BAD checksum row says count=%lld total=%lld, rows hold count=%lld sum=%lld\n",
		       ccount, csum, rows, sum);
		return 1;
	}
	printf("OK rows=%lld sum=%lld\n", rows, sum);
	return 0;
}

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && strcmp(argv[1], "--check") == 0)
		return check(argv[2]);
	if (argc < 2 || argv[1][0] == '-') {
		fprintf(stderr, "usage: sqliteloop DB [EVERY [MAX]] | sqliteloop --check DB\n");
		return 2;
	}
	long every = argc > 2 ? atol(argv[2]) : 200;
	long max = argc > 3 ? atol(argv[3]) : 50000000;
	if (every <= 0)
		every = 200;

	sqlite3 *db;
	if (sqlite3_open(argv[1], &db) != SQLITE_OK)
		die(db, "open");
	sqlite3_busy_timeout(db, 5000);
	exec_or_die(db, "PRAGMA synchronous=NORMAL");
	exec_or_die(db, "CREATE TABLE IF NOT EXISTS rows(id INTEGER PRIMARY KEY, n INTEGER, v INTEGER, pad TEXT)");
	exec_or_die(db, "CREATE TABLE IF NOT EXISTS checksum(id INTEGER PRIMARY KEY, count INTEGER, total INTEGER)");
	exec_or_die(db, "INSERT OR IGNORE INTO checksum VALUES(1, 0, 0)");

	sqlite3_stmt *ins, *upd;
	if (sqlite3_prepare_v2(db, "INSERT INTO rows(n, v, pad) VALUES(?1, ?2, ?3)", -1, &ins, NULL) != SQLITE_OK)
		die(db, "prepare insert");
	if (sqlite3_prepare_v2(db, "UPDATE checksum SET count = count + 1, total = total + ?1 WHERE id = 1", -1, &upd, NULL) != SQLITE_OK)
		die(db, "prepare update");

	char pad[64];
	printf("START pid %d\n", (int)getpid());
	for (long i = 1; i <= max; i++) {
		long long v = (i * 2654435761LL) % 1000003;
		snprintf(pad, sizeof pad, "row-%ld-%lld", i, v);
		exec_or_die(db, "BEGIN");
		sqlite3_bind_int64(ins, 1, i);
		sqlite3_bind_int64(ins, 2, v);
		sqlite3_bind_text(ins, 3, pad, -1, SQLITE_TRANSIENT);
		if (sqlite3_step(ins) != SQLITE_DONE)
			die(db, "insert");
		sqlite3_reset(ins);
		sqlite3_bind_int64(upd, 1, v);
		if (sqlite3_step(upd) != SQLITE_DONE)
			die(db, "update");
		sqlite3_reset(upd);
		exec_or_die(db, "COMMIT");
		if (i % every == 0)
			printf("progress %ld\n", i);
	}
	printf("DONE %ld\n", max);
	sqlite3_finalize(ins);
	sqlite3_finalize(upd);
	sqlite3_close(db);
	return 0;
}
