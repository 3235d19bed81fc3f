/* Threads racing lstat against a chmod loop (tests/it/shmcache.rs).
 *
 * race DIR FILE ROUNDS THREADS: FILE (in DIR, mode 0400, 5 bytes) is
 * chmod-ed ROUNDS times (at most 255), round i to 0400 | i, each round
 * after a listing of DIR (which offers FILE's lstat to the program again);
 * on even rounds this thread lstats it once before the chmod. THREADS
 * readers lstat it meanwhile, and check every answer:
 *   - stale: older than the last chmod that had returned before the lstat
 *     began;
 *   - torn: a mode outside the pattern, or a size or link count that is
 *     not the file's.
 * The ctime is not checked against the mode: Linux's own chmod and stat
 * are not atomic with each other (run natively, this program sees one
 * mode with two ctimes in most runs), so no answer can be held to more.
 * The region's seqlock is tested on its own (src/fastpath/shm/tests.rs).
 * Prints "stale N torn M" and whether the readers checked anything. */
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_THREADS 8

static const char *dir, *file;
static atomic_int done_round;
static atomic_int stop;
static atomic_long stale, torn, checked;

static unsigned mode_of(int round)
{
	return 0400u | (unsigned)(round & 0377);
}

static void list(void)
{
	DIR *d = opendir(dir);
	if (d == NULL) {
		perror("opendir");
		exit(2);
	}
	while (readdir(d) != NULL)
		;
	closedir(d);
}

/* Checks one answer, given the round done before it was asked. */
static void check(const struct stat *st, int before)
{
	int round = (int)(st->st_mode & 0377);
	if (!S_ISREG(st->st_mode) || (st->st_mode & 0777) != mode_of(round) || st->st_size != 5 ||
	    st->st_nlink != 1)
		atomic_fetch_add(&torn, 1);
	if (round < before)
		atomic_fetch_add(&stale, 1);
	atomic_fetch_add(&checked, 1);
}

static void *reader(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop)) {
		int before = atomic_load(&done_round);
		struct stat st;
		if (lstat(file, &st) != 0) {
			atomic_fetch_add(&torn, 1);
			continue;
		}
		check(&st, before);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 6 || strcmp(argv[1], "race") != 0)
		return 2;
	dir = argv[2];
	file = argv[3];
	int rounds = atoi(argv[4]);
	int threads = atoi(argv[5]);
	if (rounds < 1 || rounds > 255 || threads < 1 || threads > MAX_THREADS)
		return 2;
	pthread_t t[MAX_THREADS];
	for (int i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, reader, NULL);
	for (int round = 1; round <= rounds; round++) {
		list();
		if (round % 2 == 0) {
			struct stat st;
			if (lstat(file, &st) != 0)
				atomic_fetch_add(&torn, 1);
			else
				check(&st, round - 1);
		}
		if (chmod(file, mode_of(round)) != 0) {
			perror("chmod");
			return 1;
		}
		atomic_store(&done_round, round);
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	printf("stale %ld torn %ld\n", atomic_load(&stale), atomic_load(&torn));
	printf("readers checked answers: %s\n", atomic_load(&checked) > 0 ? "yes" : "no");
	return 0;
}
