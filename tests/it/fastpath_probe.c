/* The fast path's probe (tests/it/fastpath.rs): path calls through libc on
 * local and remote paths, under the hazards the fast path must survive.
 *
 *   probe plain ARGS...     each ARG a path, or @cd:DIR, @dirfd:DIR (later
 *                           relative paths go through that fd), @cwd (back
 *                           to AT_FDCWD), @procfd:NAME (NAME under
 *                           /proc/self/fd/DIRFD)
 *   probe blocked ARGS...   the same with every signal blocked
 *   probe sigsys ARGS...    the same with a SIGSYS handler of its own,
 *                           which must never run
 *   probe exec:N ARGS...    the same, then exec itself N-1 more times
 *   probe realpath ARGS...  realpath(3) of each path (NULL: its errno)
 *   probe streams ARGS...   opendir(3) and fopen(3) of each path (or @cd:DIR,
 *                           or @hold:PATH, which opens PATH and keeps it
 *                           open, so that the process holds a remote file)
 *   probe threads R L       4 threads stat one buffer that flips between
 *                           two paths that differ in one byte, remote-only
 *                           R and local-only L: each stat must find its
 *                           file (a path judged on one spelling and run on
 *                           the other would not)
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int dirfd_ = AT_FDCWD;
static volatile int sigsys_seen;

static void on_sigsys(int sig)
{
	(void)sig;
	sigsys_seen++;
}

static void probe(const char *path)
{
	struct stat st;
	struct statx stx;
	char link[256];
	long size = fstatat(dirfd_, path, &st, 0) == 0 ? (long)st.st_size : -errno;
	long lsize = fstatat(dirfd_, path, &st, AT_SYMLINK_NOFOLLOW) == 0 ? (long)S_ISLNK(st.st_mode) : -errno;
	long xsize = statx(dirfd_, path, 0, STATX_SIZE, &stx) == 0 ? (long)stx.stx_size : -errno;
	int acc = faccessat(dirfd_, path, R_OK, 0) == 0 ? 0 : -errno;
	long got;
	int fd = openat(dirfd_, path, O_RDONLY);
	if (fd >= 0) {
		char buf[64];
		got = read(fd, buf, sizeof buf);
		close(fd);
	} else {
		got = -errno;
	}
	ssize_t n = readlinkat(dirfd_, path, link, sizeof link - 1);
	if (n >= 0)
		link[n] = 0;
	else
		snprintf(link, sizeof link, "%d", -errno);
	printf("%s stat=%ld islink=%ld statx=%ld access=%d read=%ld readlink=%s\n", path, size, lsize, xsize, acc,
	       got, link);
}

static void probe_all(int argc, char **argv)
{
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (strncmp(a, "@cd:", 4) == 0) {
			printf("chdir %s = %d\n", a + 4, chdir(a + 4) == 0 ? 0 : -errno);
		} else if (strncmp(a, "@dirfd:", 7) == 0) {
			dirfd_ = open(a + 7, O_RDONLY | O_DIRECTORY);
			printf("dirfd %s = %s\n", a + 7, dirfd_ >= 0 ? "ok" : strerror(errno));
		} else if (strcmp(a, "@cwd") == 0) {
			dirfd_ = AT_FDCWD;
		} else if (strncmp(a, "@procfd:", 8) == 0) {
			char path[128];
			snprintf(path, sizeof path, "/proc/self/fd/%d/%s", dirfd_, a + 8);
			int saved = dirfd_;
			dirfd_ = AT_FDCWD;
			probe(path);
			dirfd_ = saved;
		} else {
			probe(a);
		}
	}
	fflush(stdout);
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* opendir's listing (sorted, without . and ..) and what fopen reads, in
 * modes "r" and "re+" */
static void stream_probe(const char *path)
{
	char listing[1024] = "";
	DIR *d = opendir(path);
	if (d) {
		char *names[64];
		int n = 0;
		struct dirent *e;
		while ((e = readdir(d)) && n < 64)
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
				names[n++] = strdup(e->d_name);
		closedir(d);
		qsort(names, n, sizeof names[0], by_name);
		for (int i = 0; i < n; i++) {
			strncat(listing, names[i], sizeof listing - strlen(listing) - 2);
			strcat(listing, i + 1 < n ? "," : "");
			free(names[i]);
		}
	} else {
		snprintf(listing, sizeof listing, "%d", -errno);
	}
	long got[2];
	const char *modes[2] = {"r", "re+"};
	for (int m = 0; m < 2; m++) {
		FILE *f = fopen(path, modes[m]);
		if (f) {
			char buf[64];
			got[m] = (long)fread(buf, 1, sizeof buf, f);
			if (ferror(f))
				got[m] = -1000 - errno;
			fclose(f);
		} else {
			got[m] = -errno;
		}
	}
	printf("%s dir=%s fopen=%ld fopen+=%ld\n", path, listing, got[0], got[1]);
}

static void streams_all(int argc, char **argv)
{
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (strncmp(a, "@cd:", 4) == 0) {
			printf("chdir %s = %d\n", a + 4, chdir(a + 4) == 0 ? 0 : -errno);
		} else if (strncmp(a, "@hold:", 6) == 0) {
			printf("hold %s = %s\n", a + 6, open(a + 6, O_RDONLY) >= 0 ? "ok" : strerror(errno));
		} else {
			stream_probe(a);
		}
	}
	fflush(stdout);
}

static char shared_path[512];
static const char *paths[2];
static size_t flip_at;

static void *racer(void *arg)
{
	long wrong = 0;
	for (int i = 0; i < 300; i++) {
		struct stat st;
		if (arg == NULL) { /* the flipper: one byte, so no torn path */
			for (int k = 0; k < 1000; k++)
				((volatile char *)shared_path)[flip_at] = paths[k % 2][flip_at];
			continue;
		}
		if (stat(shared_path, &st) != 0)
			wrong++;
	}
	return (void *)wrong;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	const char *mode = argv[1];
	if (strcmp(mode, "blocked") == 0) {
		sigset_t all;
		sigfillset(&all);
		sigprocmask(SIG_BLOCK, &all, NULL);
	} else if (strcmp(mode, "sigsys") == 0) {
		struct sigaction sa = {0};
		sa.sa_handler = on_sigsys;
		sigfillset(&sa.sa_mask);
		sigaction(SIGSYS, &sa, NULL);
	} else if (strcmp(mode, "realpath") == 0) {
		for (int i = 2; i < argc; i++) {
			char buf[4096];
			char *r = realpath(argv[i], buf);
			printf("%s -> %s\n", argv[i], r ? r : strerror(errno));
		}
		/* Whether the preload library is in this process. */
		FILE *maps = fopen("/proc/self/maps", "r");
		char line[512];
		int loaded = 0;
		while (maps && fgets(line, sizeof line, maps))
			loaded |= strstr(line, "fastpath.so") != NULL;
		printf("library %s\n", loaded ? "loaded" : "absent");
		return 0;
	} else if (strcmp(mode, "streams") == 0) {
		streams_all(argc - 2, argv + 2);
		return 0;
	} else if (strcmp(mode, "threads") == 0) {
		paths[0] = argv[2];
		paths[1] = argv[3];
		size_t len = strlen(paths[0]), diffs = 0;
		if (len != strlen(paths[1]))
			return 2;
		for (size_t k = 0; k < len; k++)
			if (paths[0][k] != paths[1][k]) {
				flip_at = k;
				diffs++;
			}
		if (diffs != 1)
			return 2;
		memcpy(shared_path, paths[0], strlen(paths[0]) + 1);
		pthread_t t[5];
		pthread_create(&t[0], NULL, racer, NULL);
		for (int i = 1; i < 5; i++)
			pthread_create(&t[i], NULL, racer, (void *)1);
		long wrong = 0;
		for (int i = 0; i < 5; i++) {
			void *w;
			pthread_join(t[i], &w);
			wrong += (long)w;
		}
		printf("stats that found nothing: %ld\n", wrong);
		return 0;
	}
	probe_all(argc - 2, argv + 2);
	if (strcmp(mode, "sigsys") == 0)
		printf("own SIGSYS handler ran %d times\n", sigsys_seen);
	if (strncmp(mode, "exec:", 5) == 0) {
		int left = atoi(mode + 5) - 1;
		if (left > 0) {
			char next[32];
			snprintf(next, sizeof next, "exec:%d", left);
			argv[1] = next;
			execv("/proc/self/exe", argv);
			perror("execv");
			return 1;
		}
	}
	return 0;
}
