/*
 * rscq's fast path: path calls that resolve outside every mount run in the
 * program's own thread, with no ptrace stop.
 *
 * rscq loads this library into dynamically linked programs (LD_PRELOAD) in
 * default mode. It defines the libc path functions (open, stat, access,
 * readlink and their variants). Each judges its path the way rscq's planner
 * does (src/syscall/paths.rs), and:
 *   - when the path cannot reach a mount, a system file rscq replaces, or a
 *     program fd rscq knows, makes the call itself through the one syscall
 *     instruction rscq's seccomp filters let through untraced (a page at a
 *     fixed address, as rr's "rr page");
 *   - otherwise makes exactly the call libc would, from its own code, which
 *     the filter traps as before: the tracer sees the same call with the
 *     same arguments, so the slow path is today's path.
 *
 * Local symlinks: the planner follows a local symlink that leads into a
 * mount. Here no symlink is ever followed on the fast path: multi-component
 * paths are opened with openat2(RESOLVE_NO_SYMLINKS) and a single name is
 * looked at without following; a symlink met sends the call to the slow
 * path.
 *
 * Freestanding: no libc is linked (the program's own libc, glibc or musl,
 * provides __errno_location and __environ at load time), no stack
 * protector, no red zone (the stub is reached by a call).
 *
 * Answers rscq holds (answers.h): when rscq names an answers region
 * (RSCQ_FASTPATH_ANSWERS, laid out as src/fastpath/shm.rs says), a remote
 * path's stat, lstat, statx, readlink and prefetched-xattr call is
 * answered from it when a fresh, unused entry is there (its one use
 * claimed first, read under the slot's seqlock); otherwise it goes to the
 * tracer as before.
 *
 * What it must not do: answer a call whose path may be remote locally, give
 * an answer from the region that rscq would not give at that moment (a
 * stale, used or torn one), change the program's memory other than the
 * caller's result buffers, or crash on a path it cannot judge (it takes
 * the slow path instead).
 */

#include <stddef.h>
#include <stdint.h>

#define AT_FDCWD (-100)
#define AT_SYMLINK_NOFOLLOW 0x100
#define AT_EACCESS 0x200
#define AT_NO_AUTOMOUNT 0x800
#define AT_EMPTY_PATH 0x1000
#define AT_STATX_SYNC_TYPE 0x6000

#define O_CREAT 0100
#define O_NOFOLLOW 0400000
#define O_CLOEXEC 02000000
#define O_RDWR 02
#define CLOCK_MONOTONIC 1
#define O_NONBLOCK 04000
#define O_DIRECTORY 0200000
#define O_PATH 010000000
#define O_TMPFILE_MASK (020000000 | 0200000)
#define O_LARGEFILE 0100000

#define RESOLVE_NO_SYMLINKS 0x04

#define SYS_mmap 9
#define SYS_mprotect 10
#define SYS_munmap 11
#define SYS_getcwd 79
#define SYS_close 3
#define SYS_lseek 8
#define SYS_openat 257
#define SYS_newfstatat 262
#define SYS_readlinkat 267
#define SYS_faccessat 269
#define SYS_statx 332
#define SYS_openat2 437
#define SYS_faccessat2 439
#define SYS_getxattr 191
#define SYS_lgetxattr 192
#define SYS_clock_gettime 228
#define SYS_getpid 39

#define PROT_READ 1
#define PROT_WRITE 2
#define PROT_EXEC 4
#define MAP_SHARED 0x01
#define MAP_PRIVATE 0x02
#define MAP_ANONYMOUS 0x20
#define MAP_FIXED_NOREPLACE 0x100000

#define S_IFMT 0170000
#define S_IFLNK 0120000
#define STATX_TYPE 1
#define STATX__RESERVED 0x80000000u

#define ELOOP 40
#define ENOTDIR 20
#define EINVAL 22
#define ENOSYS 38
#define E2BIG 7
#define ENOENT 2
#define EACCES 13
#define ENAMETOOLONG 36
#define ENOMEM 12
#define F_OK 0
#define MAXSYMLINKS 40

/* Must match src/fastpath/mod.rs. */
#define STUB_PAGE 0x71000000UL
#define PAGE 4096UL
#define MAGIC 0x5453414651435352ULL /* "RSCQFAST" */
#define FLAG_CWD_MAY_BE_REMOTE 1u
#define FLAG_FD_CALLS_STOP 2u

#define PATH_MAX_LEN 4096
/* The end of x86_64 user space with 4-level paging (TASK_SIZE_MAX), less
 * a path's length: a path that starts below it cannot run past it. Higher
 * mappings (5-level paging, asked for by hint) take the slow path. */
#define USER_SPACE_END (0x00007ffffffff000UL - PATH_MAX_LEN)
#define MAX_ROUTED 64
#define ROUTED_BYTES 16384

#define EXPORT __attribute__((visibility("default")))

typedef long ssize_t_;

struct kstat { unsigned long st_dev, st_ino, st_nlink; unsigned st_mode, st_uid, st_gid, pad0;
	unsigned long st_rdev; long st_size, st_blksize, st_blocks; unsigned long t[6]; long unused[3]; };
struct kstatx { uint32_t stx_mask, stx_blksize; uint64_t stx_attributes; uint32_t stx_nlink, stx_uid,
	stx_gid; uint16_t stx_mode; uint16_t pad[1]; uint64_t rest[30]; };
struct open_how { uint64_t flags, mode, resolve; };

extern int *__errno_location(void) __attribute__((weak));
extern void *malloc(size_t) __attribute__((weak));
extern void free(void *) __attribute__((weak));
extern char **__environ __attribute__((weak));
extern void *fdopendir(int) __attribute__((weak));
extern void *fdopen(int, const char *) __attribute__((weak));
extern void *dlsym(void *, const char *) __attribute__((weak));
struct timespec_ { long sec, nsec; };
extern int clock_gettime(int, struct timespec_ *) __attribute__((weak));
#define RTLD_NEXT ((void *)-1L)

/* Data page the tracer writes: magic, then flags (sticky until exec),
 * then the cwd as the planner sees it (src/fastpath/mod.rs, told_cwd):
 * a sequence word, odd while the tracer writes, and the block it guards.
 * Offsets must match mod.rs. */
#define CWD_PATH_CAP (4096 - 32)
struct shared_page {
	uint64_t magic;
	volatile uint32_t flags;
	uint32_t pad;
	volatile uint64_t cwd_seq;
	volatile int32_t cwd_owner;
	volatile uint32_t cwd_len;
	volatile char cwd[CWD_PATH_CAP];
};

static int ready;
/* The absolute, normalized local paths the planner routes: every mount
 * and every system file rscq replaces, NUL-separated in routed_buf. */
static const char *routed[MAX_ROUTED];
static size_t routed_len[MAX_ROUTED];
static int routed_count;
static char routed_buf[ROUTED_BYTES];

/* ---- memory helpers the compiler may call ---- */

__attribute__((visibility("hidden"))) void *memcpy(void *d, const void *s, size_t n)
{
	char *dd = d;
	const char *ss = s;
	while (n--)
		*dd++ = *ss++;
	return d;
}

__attribute__((visibility("hidden"))) void *memset(void *d, int c, size_t n)
{
	char *dd = d;
	while (n--)
		*dd++ = (char)c;
	return d;
}

/* ---- raw syscalls ---- */

/* The slow path: a syscall from this library's own code, trapped by the
 * filter as libc's would be. */
static long slow6(long n, long a, long b, long c, long d, long e, long f)
{
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

/* The fast path: the same syscall through the stub page's instruction. */
static long fast6(long n, long a, long b, long c, long d, long e, long f)
{
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	long ret;
	__asm__ volatile("call *%[stub]"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9),
			   [stub] "r"(STUB_PAGE)
			 : "rcx", "r11", "memory");
	return ret;
}

/* libc's convention: -1 and errno. */
static long done(long ret)
{
	if (ret < 0 && ret > -4096) {
		if (__errno_location)
			*__errno_location() = (int)-ret;
		return -1;
	}
	return ret;
}

static struct shared_page *page(void)
{
	return (struct shared_page *)(STUB_PAGE + PAGE);
}

/* What rscq told of this process's cwd: 1 with the remote cwd's path,
 * NUL-terminated, in out (CWD_PATH_CAP bytes; *n its length), 0 when the
 * cwd is the kernel's and no part of it is routed, -1 when not told or
 * told to another process (a vfork child shares the page), or when the
 * tracer was writing: then the caller takes the slow path. */
static int told_cwd(char *out, size_t *n)
{
	struct shared_page *p = page();
	uint64_t seq = p->cwd_seq;
	__asm__ volatile("" ::: "memory");
	if (seq & 1)
		return -1;
	int32_t owner = p->cwd_owner;
	uint32_t len = p->cwd_len;
	if (owner <= 0 || len > CWD_PATH_CAP - 1)
		return -1;
	for (uint32_t k = 0; k < len; k++)
		out[k] = p->cwd[k];
	__asm__ volatile("" ::: "memory");
	if (p->cwd_seq != seq || fast6(SYS_getpid, 0, 0, 0, 0, 0, 0) != owner)
		return -1;
	if (len == 0)
		return 0;
	if (out[0] != '/')
		return -1;
	out[len] = 0;
	if (n != NULL)
		*n = len;
	return 1;
}

/* Whether relative paths from the cwd must take the slow path: the cwd
 * may be remote, and rscq has not told that it is the kernel's again. */
static int cwd_is_remote_or_unknown(void)
{
	if (!(page()->flags & FLAG_CWD_MAY_BE_REMOTE))
		return 0;
	char path[CWD_PATH_CAP];
	return told_cwd(path, NULL) != 0;
}

/* ---- judging a path ---- */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* RSCQ_FASTPATH=1:HEX:HEX... each HEX one routed absolute path. */
static int parse_config(const char *v)
{
	if (v[0] != '1')
		return 0;
	v++;
	size_t used = 0;
	while (*v == ':') {
		v++;
		if (routed_count == MAX_ROUTED)
			return 0;
		char *out = routed_buf + used;
		size_t len = 0;
		while (v[0] && v[0] != ':') {
			int hi = hexval(v[0]), lo = v[1] ? hexval(v[1]) : -1;
			if (hi < 0 || lo < 0 || used + len + 2 > ROUTED_BYTES)
				return 0;
			char c = (char)(hi * 16 + lo);
			if (c == 0)
				return 0;
			out[len++] = c;
			v += 2;
		}
		if (len == 0 || out[0] != '/')
			return 0;
		out[len] = 0;
		routed[routed_count] = out;
		routed_len[routed_count] = len;
		routed_count++;
		used += len + 1;
	}
	return *v == 0;
}

/* Whether the normalized absolute path p[0..n) is a routed path or lies
 * under one. */
static int routed_holds(const char *p, size_t n)
{
	for (int i = 0; i < routed_count; i++) {
		size_t m = routed_len[i];
		if (m == 1) /* a mount on "/" holds everything */
			return 1;
		if (n < m)
			continue;
		int same = 1;
		for (size_t k = 0; k < m; k++)
			if (p[k] != routed[i][k]) {
				same = 0;
				break;
			}
		if (same && (n == m || p[m] == '/'))
			return 1;
	}
	return 0;
}

/* Whether name[0..n) is a component of some routed path. */
static int routed_component(const char *name, size_t n)
{
	for (int i = 0; i < routed_count; i++) {
		const char *r = routed[i];
		size_t m = routed_len[i];
		size_t k = 0;
		while (k < m) {
			while (k < m && r[k] == '/')
				k++;
			size_t start = k;
			while (k < m && r[k] != '/')
				k++;
			if (k - start == n) {
				int same = 1;
				for (size_t j = 0; j < n; j++)
					if (r[start + j] != name[j]) {
						same = 0;
						break;
					}
				if (same)
					return 1;
			}
		}
	}
	return 0;
}

static int all_digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return n > 0;
}

enum route { SLOW, SINGLE, MULTI };

/* The path the slow path passes: the copy judged, when there is one, so
 * that another thread rewriting the program's buffer cannot make the
 * tracer see a path other than the one judged here. */
static const char *as_judged(const char *path, const char *buf)
{
	return buf[0] ? buf : path;
}

/* Walks the absolute path buf[0..n) lexically as the planner does: it
 * must never stand in a routed path, even if `..` leads back out, nor in
 * the program's own fds (`/proc`, `/dev/fd`). */
static enum route judge_absolute(const char *buf, size_t n)
{
	char cur[PATH_MAX_LEN];
	size_t len = 0;
	if (routed_holds("/", 1))
		return SLOW;
	size_t i = 0;
	while (i < n) {
		while (i < n && buf[i] == '/')
			i++;
		size_t start = i;
		while (i < n && buf[i] != '/')
			i++;
		size_t c = i - start;
		if (c == 0 || (c == 1 && buf[start] == '.'))
			continue;
		if (c == 2 && buf[start] == '.' && buf[start + 1] == '.') {
			while (len > 0 && cur[len - 1] != '/')
				len--;
			if (len > 0)
				len--;
		} else {
			if (len + 1 + c >= PATH_MAX_LEN)
				return SLOW;
			cur[len++] = '/';
			for (size_t k = 0; k < c; k++)
				cur[len++] = buf[start + k];
		}
		if (len > 0 && routed_holds(cur, len))
			return SLOW;
		/* `/proc/self/fd/N`, `/dev/fd/N`: the program's own fds, which
		 * may be remote files. */
		if ((len == 5 && cur[1] == 'p' && cur[2] == 'r' && cur[3] == 'o' && cur[4] == 'c') ||
		    (len == 7 && cur[1] == 'd' && cur[2] == 'e' && cur[3] == 'v' && cur[4] == '/' &&
		     cur[5] == 'f' && cur[6] == 'd'))
			return SLOW;
	}
	return MULTI;
}

/* Decimal digits of v into out (at least 12 bytes), NUL-terminated. */
static void decimal(unsigned v, char *out)
{
	char tmp[12];
	int k = 0;
	do {
		tmp[k++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (int i = 0; i < k; i++)
		out[i] = tmp[k - 1 - i];
	out[k] = 0;
}

/* A relative path rel[0..n) with a `..` or a number as a name, which only
 * its directory's own path can judge: that path (the cwd's, or the
 * dirfd's as /proc/self/fd/N names it) joined to rel, judged as an
 * absolute path. The call itself still goes relative to the directory;
 * the kernel's `..` of a directory is its path's lexical parent, since
 * that path has no symlink in it. */
static enum route judge_from_base(int dirfd, const char *rel, size_t n)
{
	char abs[PATH_MAX_LEN];
	long len;
	if (dirfd == AT_FDCWD) {
		/* The syscall counts the NUL. */
		len = fast6(SYS_getcwd, (long)abs, PATH_MAX_LEN, 0, 0, 0, 0) - 1;
	} else {
		if (dirfd < 0)
			return SLOW;
		char link[32] = "/proc/self/fd/";
		decimal((unsigned)dirfd, link + 14);
		len = fast6(SYS_readlinkat, AT_FDCWD, (long)link, (long)abs, PATH_MAX_LEN - 1, 0, 0);
		/* " (deleted)": no path to judge by. */
		static const char deleted[] = " (deleted)";
		size_t d = sizeof deleted - 1;
		if (len >= (long)d) {
			int same = 1;
			for (size_t k = 0; k < d; k++)
				if (abs[(size_t)len - d + k] != deleted[k]) {
					same = 0;
					break;
				}
			if (same)
				return SLOW;
		}
	}
	if (len <= 0 || abs[0] != '/' || (size_t)len + 1 + n >= PATH_MAX_LEN)
		return SLOW;
	abs[len++] = '/';
	for (size_t k = 0; k < n; k++)
		abs[len++] = rel[k];
	abs[len] = 0;
	return judge_absolute(abs, (size_t)len) == SLOW ? SLOW : MULTI;
}

/* Copies the program's path into buf (left empty when it cannot) and
 * judges it. SINGLE: one name relative to a directory, no slash; MULTI:
 * anything else that is local unless a symlink on the way says
 * otherwise. */
static enum route judge(int dirfd, const char *path, char *buf)
{
	buf[0] = 0;
	/* NULL and addresses beyond user space: the kernel answers EFAULT,
	 * and reading them here would fault. */
	if (!ready || (uintptr_t)path < 65536 || (uintptr_t)path >= USER_SPACE_END)
		return SLOW;
	size_t n = 0;
	while (path[n]) {
		if (n == PATH_MAX_LEN - 1) {
			buf[0] = 0;
			return SLOW;
		}
		buf[n] = path[n];
		n++;
	}
	buf[n] = 0;
	if (n == 0)
		return SLOW;
	if (buf[0] == '/')
		return judge_absolute(buf, n);
	if (dirfd == AT_FDCWD && cwd_is_remote_or_unknown())
		return SLOW;
	/* Relative to a local directory: it reaches a routed path only if its
	 * first name is a component of one. A `..` needs the directory's own
	 * path, and a number may be an fd under /proc: both are judged with
	 * that path. */
	int first = 1, slash = 0;
	size_t i = 0;
	while (i < n) {
		if (buf[i] == '/') {
			slash = 1;
			i++;
			continue;
		}
		size_t start = i;
		while (i < n && buf[i] != '/')
			i++;
		size_t c = i - start;
		if (c == 1 && buf[start] == '.')
			continue;
		if ((c == 2 && buf[start] == '.' && buf[start + 1] == '.') || all_digits(buf + start, c))
			return judge_from_base(dirfd, buf, n);
		if (first && routed_component(buf + start, c))
			return SLOW;
		first = 0;
	}
	return slash ? MULTI : SINGLE;
}

/* An O_PATH fd on a multi-component path, no symlink followed: >= 0, or
 * -errno to give the program, or 1 - 4096 (never an errno) for the slow
 * path. */
#define TAKE_SLOW_PATH (-4095L)

/* Whether a fast call's result must be asked again on the slow path: a
 * symlink met, flags openat2 refuses, or ENOTDIR from a directory fd,
 * which is what a remote file's placeholder (a FIFO) gives. */
static int needs_slow_path(long r, int dirfd, const char *buf)
{
	if (r == -ELOOP || r == -ENOSYS || r == -E2BIG)
		return 1;
	return r == -ENOTDIR && dirfd != AT_FDCWD && buf[0] != '/';
}

static long open_no_symlinks(int dirfd, const char *buf, long flags)
{
	struct open_how how = {(uint64_t)flags, 0, RESOLVE_NO_SYMLINKS};
	long fd = fast6(SYS_openat2, dirfd, (long)buf, (long)&how, sizeof how, 0, 0);
	if (fd == -EINVAL || needs_slow_path(fd, dirfd, buf))
		return TAKE_SLOW_PATH;
	return fd;
}

#include "answers.h"

/* ---- the calls ---- */

static long do_openat(int dirfd, const char *path, int flags, unsigned mode)
{
	char buf[PATH_MAX_LEN];
	buf[0] = 0;
	if (judge(dirfd, path, buf) != SLOW) {
		int creates = (flags & O_CREAT) || (flags & O_TMPFILE_MASK) == O_TMPFILE_MASK;
		struct open_how how = {(uint64_t)(unsigned)flags | O_LARGEFILE, creates ? (mode & 07777) : 0,
				       RESOLVE_NO_SYMLINKS};
		long fd = fast6(SYS_openat2, dirfd, (long)buf, (long)&how, sizeof how, 0, 0);
		if (fd != -EINVAL && !needs_slow_path(fd, dirfd, buf))
			return done(fd);
	}
	return done(slow6(SYS_openat, dirfd, (long)as_judged(path, buf), flags, mode, 0, 0));
}

/* `(AT_FDCWD, "", AT_EMPTY_PATH)` names the cwd, which may be remote, while
 * the filter passes that exact form as an fstat: ask for "." instead. */
static void cwd_by_name(int dirfd, const char **path, int *flags)
{
	if (dirfd == AT_FDCWD && *path != NULL && (uintptr_t)*path >= 65536 &&
	    (uintptr_t)*path < USER_SPACE_END && (*path)[0] == 0 && (*flags & AT_EMPTY_PATH)) {
		*path = ".";
		*flags &= ~AT_EMPTY_PATH;
	}
}

static long do_fstatat(int dirfd, const char *path, struct kstat *st, int flags)
{
	cwd_by_name(dirfd, &path, &flags);
	char buf[PATH_MAX_LEN];
	buf[0] = 0;
	int follow = !(flags & AT_SYMLINK_NOFOLLOW);
	switch (judge(dirfd, path, buf)) {
	case SINGLE: {
		long r = fast6(SYS_newfstatat, dirfd, (long)buf, (long)st, flags | AT_SYMLINK_NOFOLLOW, 0, 0);
		if (needs_slow_path(r, dirfd, buf))
			break;
		if (r != 0 || !follow || (st->st_mode & S_IFMT) != S_IFLNK)
			return done(r);
		break;
	}
	case MULTI: {
		long fd = open_no_symlinks(dirfd, buf, O_PATH | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW));
		if (fd == TAKE_SLOW_PATH)
			break;
		if (fd < 0)
			return done(fd);
		long r = fast6(SYS_newfstatat, fd, (long)"", (long)st, AT_EMPTY_PATH | (flags & AT_NO_AUTOMOUNT), 0, 0);
		fast6(SYS_close, fd, 0, 0, 0, 0, 0);
		return done(r);
	}
	case SLOW:
		if (!(flags & ~(AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_EMPTY_PATH))) {
			long r = shm_stat(dirfd, buf, follow, st, 0);
			if (r != TAKE_SLOW_PATH)
				return done(r);
		}
		break;
	}
	/* With a name, AT_EMPTY_PATH means nothing; without it the filter
	 * stops the call (exactly AT_EMPTY_PATH passes as fstat). */
	if (path != NULL && path[0] != 0)
		flags &= ~AT_EMPTY_PATH;
	return done(slow6(SYS_newfstatat, dirfd, (long)as_judged(path, buf), (long)st, flags, 0, 0));
}

static long do_statx(int dirfd, const char *path, int flags, unsigned mask, struct kstatx *stx)
{
	cwd_by_name(dirfd, &path, &flags);
	char buf[PATH_MAX_LEN];
	buf[0] = 0;
	int follow = !(flags & AT_SYMLINK_NOFOLLOW);
	switch (path != NULL && path[0] == 0 ? SLOW : judge(dirfd, path, buf)) {
	case SINGLE: {
		long r = fast6(SYS_statx, dirfd, (long)buf, flags | AT_SYMLINK_NOFOLLOW, mask, (long)stx, 0);
		if (needs_slow_path(r, dirfd, buf))
			break;
		if (r != 0 || !follow)
			return done(r);
		if ((stx->stx_mask & STATX_TYPE) && (stx->stx_mode & S_IFMT) != S_IFLNK)
			return done(r);
		break;
	}
	case MULTI: {
		long fd = open_no_symlinks(dirfd, buf, O_PATH | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW));
		if (fd == TAKE_SLOW_PATH)
			break;
		if (fd < 0)
			return done(fd);
		long r = fast6(SYS_statx, fd, (long)"", AT_EMPTY_PATH | (flags & (AT_NO_AUTOMOUNT | AT_STATX_SYNC_TYPE)),
			       mask, (long)stx, 0);
		fast6(SYS_close, fd, 0, 0, 0, 0, 0);
		return done(r);
	}
	case SLOW:
		/* rscq's statx answer is the same whatever the mask asks (all it
		 * has, said in stx_mask), as the tracer writes it. */
		if (!(flags & ~(AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_EMPTY_PATH | AT_STATX_SYNC_TYPE)) &&
		    !(mask & STATX__RESERVED)) {
			long r = shm_stat(dirfd, buf, follow, stx, 1);
			if (r != TAKE_SLOW_PATH)
				return done(r);
		}
		break;
	}
	if (path != NULL && path[0] != 0)
		flags &= ~AT_EMPTY_PATH;
	return done(slow6(SYS_statx, dirfd, (long)as_judged(path, buf), flags, mask, (long)stx, 0));
}

static long do_faccessat(int dirfd, const char *path, int mode, int flags)
{
	char buf[PATH_MAX_LEN];
	buf[0] = 0;
	if (judge(dirfd, path, buf) != SLOW) {
		int follow = !(flags & AT_SYMLINK_NOFOLLOW);
		long fd = open_no_symlinks(dirfd, buf, O_PATH | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW));
		if (fd != TAKE_SLOW_PATH) {
			if (fd < 0)
				return done(fd);
			long r = fast6(SYS_faccessat2, fd, (long)"", mode, AT_EMPTY_PATH | (flags & AT_EACCESS), 0, 0);
			fast6(SYS_close, fd, 0, 0, 0, 0, 0);
			if (r != -ENOSYS && r != -EINVAL)
				return done(r);
		}
	}
	if (flags == 0)
		return done(slow6(SYS_faccessat, dirfd, (long)as_judged(path, buf), mode, 0, 0, 0));
	return done(slow6(SYS_faccessat2, dirfd, (long)as_judged(path, buf), mode, flags, 0, 0));
}

static long do_readlinkat(int dirfd, const char *path, char *out, size_t size)
{
	char buf[PATH_MAX_LEN];
	buf[0] = 0;
	switch (judge(dirfd, path, buf)) {
	case SINGLE: {
		long r = fast6(SYS_readlinkat, dirfd, (long)buf, (long)out, (long)size, 0, 0);
		if (needs_slow_path(r, dirfd, buf))
			break;
		return done(r);
	}
	case MULTI: {
		long fd = open_no_symlinks(dirfd, buf, O_PATH | O_CLOEXEC | O_NOFOLLOW);
		if (fd == TAKE_SLOW_PATH)
			break;
		if (fd < 0)
			return done(fd);
		struct kstat st;
		long r = fast6(SYS_newfstatat, fd, (long)"", (long)&st, AT_EMPTY_PATH, 0, 0);
		if (r == 0)
			r = (st.st_mode & S_IFMT) == S_IFLNK
				    ? fast6(SYS_readlinkat, fd, (long)"", (long)out, (long)size, 0, 0)
				    : -EINVAL;
		fast6(SYS_close, fd, 0, 0, 0, 0, 0);
		return done(r);
	}
	case SLOW: {
		long r = shm_readlink(dirfd, buf, out, size);
		if (r != TAKE_SLOW_PATH)
			return done(r);
		break;
	}
	}
	return done(slow6(SYS_readlinkat, dirfd, (long)as_judged(path, buf), (long)out, (long)size, 0, 0));
}

/* ---- the libc names ---- */

#define MODE_ARG(flags, mode)                                                                       \
	do {                                                                                        \
		if ((flags) & O_CREAT || ((flags) & O_TMPFILE_MASK) == O_TMPFILE_MASK) {            \
			__builtin_va_list ap;                                                       \
			__builtin_va_start(ap, flags);                                              \
			mode = __builtin_va_arg(ap, unsigned);                                      \
			__builtin_va_end(ap);                                                       \
		}                                                                                   \
	} while (0)

EXPORT int open(const char *path, int flags, ...)
{
	unsigned mode = 0;
	MODE_ARG(flags, mode);
	return (int)do_openat(AT_FDCWD, path, flags, mode);
}

EXPORT int open64(const char *path, int flags, ...)
{
	unsigned mode = 0;
	MODE_ARG(flags, mode);
	return (int)do_openat(AT_FDCWD, path, flags, mode);
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	unsigned mode = 0;
	MODE_ARG(flags, mode);
	return (int)do_openat(dirfd, path, flags, mode);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	unsigned mode = 0;
	MODE_ARG(flags, mode);
	return (int)do_openat(dirfd, path, flags, mode);
}

/* _FORTIFY_SOURCE's forms: no mode, and O_CREAT is refused by libc. */
EXPORT int __open_2(const char *path, int flags)
{
	return (int)do_openat(AT_FDCWD, path, flags, 0);
}

EXPORT int __open64_2(const char *path, int flags)
{
	return (int)do_openat(AT_FDCWD, path, flags, 0);
}

EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
	return (int)do_openat(dirfd, path, flags, 0);
}

EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
	return (int)do_openat(dirfd, path, flags, 0);
}

EXPORT int stat(const char *path, struct kstat *st)
{
	return (int)do_fstatat(AT_FDCWD, path, st, 0);
}

EXPORT int stat64(const char *path, struct kstat *st)
{
	return (int)do_fstatat(AT_FDCWD, path, st, 0);
}

EXPORT int lstat(const char *path, struct kstat *st)
{
	return (int)do_fstatat(AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW);
}

EXPORT int lstat64(const char *path, struct kstat *st)
{
	return (int)do_fstatat(AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW);
}

EXPORT int fstatat(int dirfd, const char *path, struct kstat *st, int flags)
{
	return (int)do_fstatat(dirfd, path, st, flags);
}

EXPORT int fstatat64(int dirfd, const char *path, struct kstat *st, int flags)
{
	return (int)do_fstatat(dirfd, path, st, flags);
}

/* The versioned entry points programs built against glibc before 2.33
 * still call (GNU make among them). On x86_64 both versions glibc knew,
 * _STAT_VER_KERNEL (0) and _STAT_VER_LINUX (1), fill the kernel's
 * `struct stat`; any other fails with EINVAL, as glibc's own does. */
static int xstat_version_known(int ver)
{
	return ver == 0 || ver == 1;
}

EXPORT int __xstat(int ver, const char *path, struct kstat *st)
{
	if (!xstat_version_known(ver))
		return (int)done(-EINVAL);
	return (int)do_fstatat(AT_FDCWD, path, st, 0);
}

EXPORT int __xstat64(int ver, const char *path, struct kstat *st)
{
	return __xstat(ver, path, st);
}

EXPORT int __lxstat(int ver, const char *path, struct kstat *st)
{
	if (!xstat_version_known(ver))
		return (int)done(-EINVAL);
	return (int)do_fstatat(AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW);
}

EXPORT int __lxstat64(int ver, const char *path, struct kstat *st)
{
	return __lxstat(ver, path, st);
}

EXPORT int __fxstatat(int ver, int dirfd, const char *path, struct kstat *st, int flags)
{
	if (!xstat_version_known(ver))
		return (int)done(-EINVAL);
	return (int)do_fstatat(dirfd, path, st, flags);
}

EXPORT int __fxstatat64(int ver, int dirfd, const char *path, struct kstat *st, int flags)
{
	return __fxstatat(ver, dirfd, path, st, flags);
}

EXPORT int statx(int dirfd, const char *path, int flags, unsigned mask, struct kstatx *stx)
{
	return (int)do_statx(dirfd, path, flags, mask, stx);
}

EXPORT int access(const char *path, int mode)
{
	return (int)do_faccessat(AT_FDCWD, path, mode, 0);
}

EXPORT int faccessat(int dirfd, const char *path, int mode, int flags)
{
	return (int)do_faccessat(dirfd, path, mode, flags);
}

EXPORT long readlink(const char *path, char *out, size_t size)
{
	return do_readlinkat(AT_FDCWD, path, out, size);
}

EXPORT long readlinkat(int dirfd, const char *path, char *out, size_t size)
{
	return do_readlinkat(dirfd, path, out, size);
}

/* getxattr and lgetxattr: a remote path's absent prefetched xattr is
 * answered from the region; every other call is the one libc makes. */
static long do_getxattr(const char *path, const char *name, void *value, size_t size, int follow)
{
	char buf[PATH_MAX_LEN];
	buf[0] = 0;
	if (judge(AT_FDCWD, path, buf) == SLOW) {
		long r = shm_xattr(buf, name, follow);
		if (r != TAKE_SLOW_PATH)
			return done(r);
	}
	return done(slow6(follow ? SYS_getxattr : SYS_lgetxattr, (long)as_judged(path, buf), (long)name, (long)value,
			  (long)size, 0, 0));
}

EXPORT long getxattr(const char *path, const char *name, void *value, size_t size)
{
	return do_getxattr(path, name, value, size, 1);
}

EXPORT long lgetxattr(const char *path, const char *name, void *value, size_t size)
{
	return do_getxattr(path, name, value, size, 0);
}


/* ---- realpath: glibc's algorithm, its readlinks through the fast path ---- */

/* glibc's realpath makes its readlink calls inside libc, where this library
 * cannot see them: each would stop. This is glibc 2.36's algorithm
 * (stdlib/canonicalize.c, realpath_stk), with every readlink and access
 * made through do_readlinkat/do_faccessat, so each is judged as any other
 * path call (a remote one still goes to the tracer). */

static size_t str_len(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

static void set_errno(int e)
{
	if (__errno_location)
		*__errno_location() = e;
}

static int get_errno(void)
{
	return __errno_location ? *__errno_location() : 0;
}

/* Whether what follows a component requires it to be a directory: a
 * trailing slash, or a following "." or "..". */
static int suffix_requires_dir_check(const char *end)
{
	while (*end == '/') {
		do
			end++;
		while (*end == '/');
		switch (*end++) {
		default:
			return 0;
		case '\0':
			return 1;
		case '.':
			break;
		}
		if (!*end || (*end == '.' && (!end[1] || end[1] == '/')))
			return 1;
	}
	return 0;
}

/* rname[0..dest) is a directory that exists (F_OK on "dir/"). */
static int dir_check(char *rname, char *dest)
{
	dest[0] = '/';
	dest[1] = 0;
	return do_faccessat(AT_FDCWD, rname, F_OK, AT_EACCESS) == 0;
}

static char *realpath_into(const char *name, char *rname)
{
	char extra[PATH_MAX_LEN];
	char link[PATH_MAX_LEN];
	char *dest;
	int num_links = 0;
	if (name[0] != '/') {
		long len;
		if (ready && !(page()->flags & FLAG_CWD_MAY_BE_REMOTE))
			len = fast6(SYS_getcwd, (long)rname, PATH_MAX_LEN, 0, 0, 0, 0);
		else
			len = slow6(SYS_getcwd, (long)rname, PATH_MAX_LEN, 0, 0, 0, 0);
		if (len < 0) {
			set_errno((int)-len);
			return NULL;
		}
		dest = rname + str_len(rname);
	} else {
		dest = rname;
		*dest++ = '/';
	}
	const char *start = name;
	const char *end;
	for (; *start; start = end) {
		while (*start == '/')
			++start;
		for (end = start; *end && *end != '/'; ++end)
			;
		size_t startlen = (size_t)(end - start);
		if (startlen == 0)
			break;
		if (startlen == 1 && start[0] == '.')
			continue;
		if (startlen == 2 && start[0] == '.' && start[1] == '.') {
			if (dest > rname + 1)
				for (--dest; dest > rname && dest[-1] != '/'; --dest)
					continue;
			continue;
		}
		if (dest[-1] != '/')
			*dest++ = '/';
		if ((size_t)(dest - rname) + startlen + 2 > PATH_MAX_LEN) {
			set_errno(ENAMETOOLONG);
			goto error;
		}
		for (size_t k = 0; k < startlen; k++)
			*dest++ = start[k];
		*dest = 0;
		long n = do_readlinkat(AT_FDCWD, rname, link, PATH_MAX_LEN - 1);
		if (n >= 0) {
			if (++num_links > MAXSYMLINKS) {
				set_errno(ELOOP);
				goto error;
			}
			link[n] = 0;
			size_t len = str_len(end);
			if ((size_t)n + len + 1 > PATH_MAX_LEN) {
				set_errno(ENAMETOOLONG);
				goto error;
			}
			/* The link's target, then the rest of the name. */
			for (size_t k = 0; k <= len; k++)
				extra[n + k] = end[k];
			for (long k = 0; k < n; k++)
				extra[k] = link[k];
			name = end = extra;
			if (link[0] == '/')
				dest = rname + 1;
			else if (dest > rname + 1)
				for (--dest; dest > rname && dest[-1] != '/'; --dest)
					continue;
		} else if (!(suffix_requires_dir_check(end) ? dir_check(rname, dest) : get_errno() == EINVAL)) {
			goto error;
		}
	}
	if (dest > rname + 1 && dest[-1] == '/')
		--dest;
	*dest = 0;
	return rname;
error:
	*dest = 0;
	return NULL;
}

EXPORT char *realpath(const char *name, char *resolved)
{
	if (name == NULL) {
		set_errno(EINVAL);
		return NULL;
	}
	if (name[0] == 0) {
		set_errno(ENOENT);
		return NULL;
	}
	char rname[PATH_MAX_LEN];
	rname[0] = 0;
	char *got = realpath_into(name, rname);
	if (got == NULL) {
		/* glibc leaves the prefix it reached in the caller's buffer when
		 * that prefix does not exist or cannot be reached. */
		int e = get_errno();
		if (resolved != NULL && (e == ENOENT || e == EACCES))
			for (size_t k = 0; k <= str_len(rname); k++)
				resolved[k] = rname[k];
		return NULL;
	}
	size_t len = str_len(rname) + 1;
	char *out = resolved;
	if (out == NULL) {
		if (!malloc) {
			set_errno(ENOMEM);
			return NULL;
		}
		out = malloc(len);
		if (out == NULL)
			return NULL;
	}
	for (size_t k = 0; k < len; k++)
		out[k] = rname[k];
	return out;
}

EXPORT char *canonicalize_file_name(const char *name)
{
	return realpath(name, NULL);
}

/* ---- opendir and fopen: libc's own opens, which the library cannot see ---- */

/* glibc's opendir and fopen open their file inside libc, where the open
 * above is not the one called: each stopped. A local path is opened here
 * on the fast path and handed to fdopendir/fdopen; anything else goes to
 * libc's own function (found with dlsym(RTLD_NEXT), with the judged copy of
 * the path), so it stops as before. So does everything in a process whose
 * fd calls stop: there fdopendir's fstat and fcntl would stop more often
 * than libc's open and fstat do. */

static void *libc_next(void **slot, const char *name)
{
	void *f = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
	if (f == NULL && dlsym) {
		f = dlsym(RTLD_NEXT, name);
		__atomic_store_n(slot, f, __ATOMIC_RELEASE);
	}
	return f;
}

/* A local fd opened on the fast path for `path` with `flags`: >= 0, or
 * -errno for the program, or TAKE_SLOW_PATH. */
static long fast_open_for_stream(const char *path, char *buf, int flags)
{
	if (!ready || (page()->flags & FLAG_FD_CALLS_STOP) || judge(AT_FDCWD, path, buf) == SLOW)
		return TAKE_SLOW_PATH;
	return open_no_symlinks(AT_FDCWD, buf, flags | O_LARGEFILE);
}

/* Closes `fd` after fdopendir/fdopen refused it, keeping their errno. */
static void close_keeping_errno(long fd)
{
	int e = __errno_location ? *__errno_location() : 0;
	fast6(SYS_close, fd, 0, 0, 0, 0, 0);
	if (__errno_location)
		*__errno_location() = e;
}

static void *next_opendir;

/* A directory stream for `fd`, or NULL with fdopendir's errno (and `fd`
 * closed). */
static void *dir_of(long fd)
{
	if (fd < 0) {
		done(fd);
		return NULL;
	}
	void *dir = fdopendir((int)fd);
	if (dir == NULL)
		close_keeping_errno(fd);
	return dir;
}

/* glibc's opendir flags (dirent/opendir.c), O_RDONLY included. */
#define OPENDIR_FLAGS (O_NONBLOCK | O_DIRECTORY | O_CLOEXEC)

EXPORT void *opendir(const char *path)
{
	char buf[PATH_MAX_LEN];
	buf[0] = 0;
	if (!fdopendir) {
		done(-ENOSYS);
		return NULL;
	}
	long fd = fast_open_for_stream(path, buf, OPENDIR_FLAGS);
	if (fd != TAKE_SLOW_PATH)
		return dir_of(fd);
	void *(*libc_opendir)(const char *) = (void *(*)(const char *))libc_next(&next_opendir, "opendir");
	if (libc_opendir)
		return libc_opendir(as_judged(path, buf));
	/* No dlsym (a libc older than 2.34 without libdl loaded): libc's open,
	 * on the slow path. */
	return dir_of(slow6(SYS_openat, AT_FDCWD, (long)as_judged(path, buf), OPENDIR_FLAGS | O_LARGEFILE, 0, 0, 0));
}

/* The open(2) flags of fopen's `mode` as glibc reads it (libio/fileops.c:
 * the first character, then at most six modifiers), or -1 for a mode it
 * refuses. `*plain_read` says whether open plus fdopen is exactly fopen:
 * "r" or "r+" (no create, truncate or append position) with no ",ccs=". */
static int fopen_flags(const char *mode, int *plain_read)
{
	int access, rest;
	*plain_read = 0;
	if (mode == NULL)
		return -1;
	switch (mode[0]) {
	case 'r':
		access = 0;
		rest = 0;
		break;
	case 'w':
		access = 01;
		rest = O_CREAT | 01000; /* O_TRUNC */
		break;
	case 'a':
		access = 01;
		rest = O_CREAT | 02000; /* O_APPEND */
		break;
	default:
		return -1;
	}
	int other = 0;
	for (int i = 1; i < 7 && mode[i]; i++) {
		if (mode[i] == '+')
			access = O_RDWR;
		else if (mode[i] == 'e')
			rest |= O_CLOEXEC;
		else if (mode[i] == 'x')
			rest |= 0200; /* O_EXCL */
		else if (mode[i] == ',') {
			other = 1;
			break;
		}
	}
	*plain_read = mode[0] == 'r' && !other;
	return access | rest;
}

static void *next_fopen;
static void *next_fopen64;

/* A stream for `fd`, or NULL with fdopen's errno (and `fd` closed). */
static void *file_of(long fd, const char *mode)
{
	if (fd < 0) {
		done(fd);
		return NULL;
	}
	void *file = fdopen((int)fd, mode);
	if (file == NULL)
		close_keeping_errno(fd);
	return file;
}

static void *do_fopen(const char *path, const char *mode, void **slot, const char *name)
{
	char buf[PATH_MAX_LEN];
	buf[0] = 0;
	int plain_read;
	int flags = fopen_flags(mode, &plain_read);
	if (!fdopen) {
		done(-ENOSYS);
		return NULL;
	}
	if (plain_read) {
		long fd = fast_open_for_stream(path, buf, flags);
		if (fd != TAKE_SLOW_PATH)
			return file_of(fd, mode);
	}
	void *(*libc_fopen)(const char *, const char *) =
		(void *(*)(const char *, const char *))libc_next(slot, name);
	if (libc_fopen)
		return libc_fopen(as_judged(path, buf), mode);
	/* No dlsym: libc's open on the slow path, and fdopen; an append
	 * stream starts at the end, as glibc's fopen puts it. */
	if (flags < 0) {
		done(-EINVAL);
		return NULL;
	}
	long fd = slow6(SYS_openat, AT_FDCWD, (long)as_judged(path, buf), flags | O_LARGEFILE, 0666, 0, 0);
	if (fd >= 0 && mode[0] == 'a')
		slow6(SYS_lseek, fd, 0, 2 /* SEEK_END */, 0, 0, 0);
	return file_of(fd, mode);
}

EXPORT void *fopen(const char *path, const char *mode)
{
	return do_fopen(path, mode, &next_fopen, "fopen");
}

EXPORT void *fopen64(const char *path, const char *mode)
{
	return do_fopen(path, mode, &next_fopen64, "fopen64");
}

/* ---- set-up ---- */

static const char *env_value(const char *name)
{
	if (!&__environ || __environ == NULL)
		return NULL;
	for (char **e = __environ; *e; e++) {
		const char *a = *e, *b = name;
		while (*b && *a == *b) {
			a++;
			b++;
		}
		if (*b == 0 && *a == '=')
			return a + 1;
	}
	return NULL;
}

__attribute__((constructor)) static void rscq_fastpath_init(void)
{
	if (!__errno_location)
		return;
	const char *conf = env_value("RSCQ_FASTPATH");
	if (conf == NULL || !parse_config(conf))
		return;
	long got = slow6(SYS_mmap, STUB_PAGE, 2 * PAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (got != (long)STUB_PAGE) {
		/* Taken (EEXIST), or a kernel that ignores the flag and put it
		 * elsewhere: no fast path in this process. */
		if (got > 0)
			slow6(SYS_munmap, got, 2 * PAGE, 0, 0, 0, 0);
		return;
	}
	unsigned char *code = (unsigned char *)STUB_PAGE;
	code[0] = 0x0f; /* syscall */
	code[1] = 0x05;
	code[2] = 0xc3; /* ret */
	if (slow6(SYS_mprotect, STUB_PAGE, PAGE, PROT_READ | PROT_EXEC, 0, 0, 0) != 0)
		return;
	page()->magic = MAGIC;
	/* Started in a directory the planner routes (a mount point that exists
	 * here): relative paths go the slow way. */
	char cwd[PATH_MAX_LEN];
	long len = slow6(SYS_getcwd, (long)cwd, sizeof cwd, 0, 0, 0, 0);
	if (len <= 1 || cwd[0] != '/' || routed_holds(cwd, (size_t)len - 1))
		page()->flags |= FLAG_CWD_MAY_BE_REMOTE;
	shm_map(env_value(ANSWERS_VAR_NAME));
	ready = 1;
}
