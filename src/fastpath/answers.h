/*
 * The answers region, the library's side (src/fastpath/shm.rs has the
 * layout, the writer and a reader these functions follow): finding a
 * remote path's entry under its slot's seqlock, checking its expiry,
 * claiming its one use, and the stat, readlink and xattr answers built on
 * them. Included once, by preload.c, after the raw syscalls, judging and
 * TAKE_SLOW_PATH it uses.
 *
 * Must not answer from an entry that is being written, expired, used up,
 * or whose path differs in any byte from the call's.
 */

/* The answers region: must match src/fastpath/shm.rs (a unit test there
 * reads these lines). */
#define SHM_MAGIC 0x31534e4151435352ULL /* "RSCQANS1" */
#define SHM_SLOTS 4096
#define SHM_SLOT_WORDS 128
#define SHM_HEADER_WORDS 512
#define SHM_MAX_PROBES 8
#define SHM_PATH_CAP 256
#define SHM_LINK_CAP 256
#define SHM_TABLE_BYTES 4198400
#define SHM_CLAIMS_BYTES 36864
#define SHM_CLAIMS_FIRST_WORD 8
#define SHM_W_PATH 5
#define SHM_W_STAT 37
#define SHM_W_STATX 55
#define SHM_W_LINK 87
#define ANSWERS_VAR_NAME "RSCQ_FASTPATH_ANSWERS"
/* Shape flags (the slot's word 3, from bit 32) and claim bits. */
#define SHM_HAS_STAT 1u
#define SHM_IS_LINK 2u
#define SHM_HAS_LINK 4u
#define SHM_HAS_XATTR 8u
#define SHM_USED_STAT 1u
#define SHM_USED_LINK 2u
#define SHM_USED_XATTR 4u

/* ---- answers rscq holds: the shared region ---- */

/* The region's read-only table and its writable part (the answer count,
 * then one claim word per slot); NULL without one. */
static const uint64_t *shm_table;
static uint64_t *shm_claims;

/* A consistent copy of one slot's words that a call needs. */
struct shm_hit {
	unsigned slot;
	uint64_t seq, expires, shape, errnos;
	uint64_t data[SHM_LINK_CAP / 8 > 32 ? SHM_LINK_CAP / 8 : 32];
};

static uint64_t load_word(const uint64_t *w)
{
	return __atomic_load_n(w, __ATOMIC_RELAXED);
}

/* FNV-1a, never 0: as src/fastpath/shm.rs hashes. */
static uint64_t shm_hash(const char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)p[i];
		h *= 0x100000001b3ULL;
	}
	return h ? h : 1;
}

/* Absolute, with no empty, "." or ".." component and no trailing slash:
 * the only spellings rscq offers answers under. */
static int plain_path(const char *p, size_t n)
{
	if (n < 2 || p[0] != '/' || p[n - 1] == '/')
		return 0;
	size_t i = 1;
	while (i <= n) {
		size_t start = i;
		while (i < n && p[i] != '/')
			i++;
		size_t c = i - start;
		if (c == 0 || (c == 1 && p[start] == '.') || (c == 2 && p[start] == '.' && p[start + 1] == '.'))
			return 0;
		i++;
	}
	return 1;
}

static const uint64_t *shm_slot(unsigned i)
{
	return shm_table + SHM_HEADER_WORDS + (size_t)i * SHM_SLOT_WORDS;
}

/* Finds the NUL-terminated path p in the region and copies `count` words
 * from word `first` of its slot, all under the slot's seqlock: 1 and *hit
 * filled, or 0. */
static int shm_find(const char *p, size_t first, size_t count, struct shm_hit *hit)
{
	if (shm_table == NULL)
		return 0;
	size_t n = 0;
	while (n <= SHM_PATH_CAP && p[n])
		n++;
	if (n > SHM_PATH_CAP || !plain_path(p, n))
		return 0;
	uint64_t h = shm_hash(p, n);
	unsigned start = (unsigned)(h % SHM_SLOTS);
	for (unsigned probe = 0; probe < SHM_MAX_PROBES; probe++) {
		unsigned i = (start + probe) % SHM_SLOTS;
		const uint64_t *w = shm_slot(i);
		uint64_t seq = __atomic_load_n(&w[0], __ATOMIC_ACQUIRE);
		if ((seq & 1) || seq == 0 || load_word(&w[1]) != h)
			continue;
		uint64_t shape = load_word(&w[3]);
		if ((shape & 0xffff) != n)
			continue;
		uint64_t path[SHM_PATH_CAP / 8];
		for (size_t k = 0; k < (n + 7) / 8; k++)
			path[k] = load_word(&w[SHM_W_PATH + k]);
		for (size_t k = 0; k < count; k++)
			hit->data[k] = load_word(&w[first + k]);
		hit->expires = load_word(&w[2]);
		hit->errnos = load_word(&w[4]);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (load_word(&w[0]) != seq)
			continue;
		const char *bytes = (const char *)path;
		int same = 1;
		for (size_t k = 0; k < n; k++)
			if (bytes[k] != p[k]) {
				same = 0;
				break;
			}
		if (!same)
			continue;
		hit->slot = i;
		hit->seq = seq;
		hit->shape = shape;
		return 1;
	}
	return 0;
}

/* The absolute spelling the region knows the judged path `buf` by, in
 * `abs` (PATH_MAX_LEN bytes) if it must be built: `buf` itself when
 * absolute; when relative to the cwd, the cwd the planner would join it
 * to (the remote cwd rscq told the page, or the kernel's when rscq has
 * not marked the cwd remote or told that it is local again) and `buf`;
 * NULL otherwise (a dirfd, a cwd not told), which takes the slow path. */
static const char *shm_key(int dirfd, const char *buf, char *abs)
{
	if (buf[0] == '/')
		return buf;
	if (buf[0] == 0 || dirfd != AT_FDCWD)
		return NULL;
	long len;
	size_t told = 0;
	int remote = (page()->flags & FLAG_CWD_MAY_BE_REMOTE) ? told_cwd(abs, &told) : 0;
	if (remote < 0)
		return NULL;
	if (remote > 0) {
		/* The remote cwd as the planner joins to it: the key the
		 * listing offered its entries under. */
		len = (long)told;
	} else {
		/* The syscall counts the NUL. */
		len = fast6(SYS_getcwd, (long)abs, PATH_MAX_LEN, 0, 0, 0, 0) - 1;
	}
	if (len <= 0 || abs[0] != '/')
		return NULL;
	size_t n = 0;
	while (n <= SHM_PATH_CAP && buf[n])
		n++;
	if ((size_t)len + 1 + n > SHM_PATH_CAP)
		return NULL;
	if (len > 1)
		abs[len++] = '/';
	for (size_t k = 0; k <= n; k++)
		abs[(size_t)len + k] = buf[k];
	return abs;
}

/* Whether the hit's entry still answers now (its TTL, as rscq's). */
static int shm_fresh(const struct shm_hit *hit)
{
	struct timespec_ t;
	long r = clock_gettime ? clock_gettime(CLOCK_MONOTONIC, &t)
			       : fast6(SYS_clock_gettime, CLOCK_MONOTONIC, (long)&t, 0, 0, 0, 0);
	if (r != 0 || t.sec < 0)
		return 0;
	uint64_t now = (uint64_t)t.sec * 1000000000ULL + (uint64_t)t.nsec;
	return now <= hit->expires;
}

static uint64_t shm_flags(const struct shm_hit *hit)
{
	return hit->shape >> 32;
}

/* Counts one answer given from the region (rscq's --stats). */
static void shm_count(void)
{
	__atomic_fetch_add(&shm_claims[0], 1, __ATOMIC_RELAXED);
}

/* Claims the one use `bit` of the hit's entry: 1 when this call may give
 * it (no one had, and rscq did not take the entry back meanwhile; rscq
 * marks a slot changed before it reads its claim, so one of the two sees
 * the other). */
static int shm_claim(const struct shm_hit *hit, uint64_t bit)
{
	uint64_t *word = &shm_claims[SHM_CLAIMS_FIRST_WORD + hit->slot];
	uint64_t cur = __atomic_load_n(word, __ATOMIC_SEQ_CST);
	for (;;) {
		uint64_t base = (cur >> 8) == hit->seq ? cur : hit->seq << 8;
		if (base & bit)
			return 0;
		if (__atomic_compare_exchange_n(word, &cur, base | bit, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
			break;
	}
	if (__atomic_load_n(&shm_slot(hit->slot)[0], __ATOMIC_SEQ_CST) != hit->seq)
		return 0;
	shm_count();
	return 1;
}

/* Whether the hit's use `bit` is unclaimed (for answers that use nothing
 * up, as readlink's EINVAL of a file rscq has an unused lstat of). */
static int shm_unused(const struct shm_hit *hit, uint64_t bit)
{
	uint64_t cur = __atomic_load_n(&shm_claims[SHM_CLAIMS_FIRST_WORD + hit->slot], __ATOMIC_SEQ_CST);
	if ((cur >> 8) == hit->seq && (cur & bit))
		return 0;
	return __atomic_load_n(&shm_slot(hit->slot)[0], __ATOMIC_SEQ_CST) == hit->seq;
}

/* A pointer the program passed for a result: one the library may write
 * (a NULL or kernel address is the kernel's EFAULT, at the stop). */
static int writable_arg(const void *p)
{
	return (uintptr_t)p >= 65536 && (uintptr_t)p < USER_SPACE_END;
}

/* The `lstat` answer rscq holds for the judged path `buf`, as `struct
 * stat` or `struct statx` (`statx_layout`) into `out`: 0, -errno, or
 * TAKE_SLOW_PATH. A following call on a symlink is not its lstat. */
static long shm_stat(int dirfd, const char *buf, int follow, void *out, int statx_layout)
{
	struct shm_hit hit;
	char abs[PATH_MAX_LEN];
	const char *key = shm_key(dirfd, buf, abs);
	size_t first = statx_layout ? SHM_W_STATX : SHM_W_STAT;
	size_t words = statx_layout ? 256 / 8 : 144 / 8;
	if (key == NULL || !writable_arg(out) || !shm_find(key, first, words, &hit))
		return TAKE_SLOW_PATH;
	uint64_t flags = shm_flags(&hit);
	if (!(flags & SHM_HAS_STAT) || (follow && (flags & SHM_IS_LINK)) || !shm_fresh(&hit) ||
	    !shm_claim(&hit, SHM_USED_STAT))
		return TAKE_SLOW_PATH;
	long e = (long)(hit.errnos & 0xffff);
	if (e)
		return -e;
	memcpy(out, hit.data, words * 8);
	return 0;
}

/* The answer rscq holds for readlink of the judged path `buf`: a
 * symlink's target (one use), or EINVAL for a file whose lstat rscq holds
 * unused. */
static long shm_readlink(int dirfd, const char *buf, char *out, size_t size)
{
	struct shm_hit hit;
	char abs[PATH_MAX_LEN];
	const char *key = shm_key(dirfd, buf, abs);
	if (key == NULL || size == 0 || size > 0x7fffffff || !writable_arg(out) ||
	    !shm_find(key, SHM_W_LINK, SHM_LINK_CAP / 8, &hit) || !shm_fresh(&hit))
		return TAKE_SLOW_PATH;
	uint64_t flags = shm_flags(&hit);
	if (flags & SHM_IS_LINK) {
		if (!(flags & SHM_HAS_LINK) || !shm_claim(&hit, SHM_USED_LINK))
			return TAKE_SLOW_PATH;
		size_t len = (size_t)((hit.shape >> 16) & 0xffff);
		if (len > size)
			len = size;
		memcpy(out, hit.data, len);
		return (long)len;
	}
	if (!(flags & SHM_HAS_STAT) || (hit.errnos & 0xffff) || !shm_unused(&hit, SHM_USED_STAT))
		return TAKE_SLOW_PATH;
	shm_count();
	return -EINVAL;
}

/* The xattrs rscq prefetches with a listing, in its order
 * (proto::PREFETCHED_XATTRS). */
static const char *const prefetched_xattrs[3] = {"security.selinux", "system.posix_acl_access",
						 "system.posix_acl_default"};

/* The absent-xattr answer rscq holds for xattr `name` of the judged path
 * `buf`: -errno, or TAKE_SLOW_PATH. */
static long shm_xattr(const char *buf, const char *name, int follow)
{
	if ((uintptr_t)name < 65536 || (uintptr_t)name >= USER_SPACE_END)
		return TAKE_SLOW_PATH;
	int k = -1;
	for (int i = 0; i < 3 && k < 0; i++) {
		const char *x = prefetched_xattrs[i];
		size_t j = 0;
		while (x[j] && name[j] == x[j])
			j++;
		if (x[j] == 0 && name[j] == 0)
			k = i;
	}
	struct shm_hit hit;
	char abs[PATH_MAX_LEN];
	const char *key = k < 0 ? NULL : shm_key(AT_FDCWD, buf, abs);
	if (key == NULL || !shm_find(key, 0, 0, &hit))
		return TAKE_SLOW_PATH;
	uint64_t flags = shm_flags(&hit);
	if (!(flags & (SHM_HAS_XATTR << k)) || (follow && (flags & SHM_IS_LINK)) || !shm_fresh(&hit) ||
	    !shm_claim(&hit, SHM_USED_XATTR << k))
		return TAKE_SLOW_PATH;
	return -(long)((hit.errnos >> (16 * (k + 1))) & 0xffff);
}

/* Maps the region rscq names, if any: the table read-only, the claims
 * writable, both shared with rscq and every other process of the run. */
static void shm_map(const char *where)
{
	if (where == NULL || where[0] != '/')
		return;
	long fd = fast6(SYS_openat, AT_FDCWD, (long)where, O_RDWR | O_CLOEXEC, 0, 0, 0);
	if (fd < 0)
		return;
	long table = fast6(SYS_mmap, 0, SHM_TABLE_BYTES, PROT_READ, MAP_SHARED, fd, 0);
	long claims = fast6(SYS_mmap, 0, SHM_CLAIMS_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, SHM_TABLE_BYTES);
	fast6(SYS_close, fd, 0, 0, 0, 0, 0);
	/* A raw mmap fails with -errno; user addresses are positive. */
	int table_ok = table > 0;
	int claims_ok = claims > 0;
	if (table_ok && claims_ok) {
		const uint64_t *t = (const uint64_t *)table;
		if (__atomic_load_n(&t[0], __ATOMIC_ACQUIRE) == SHM_MAGIC && t[1] == SHM_SLOTS &&
		    t[2] == SHM_SLOT_WORDS) {
			shm_claims = (uint64_t *)claims;
			shm_table = t;
			return;
		}
	}
	if (table_ok)
		fast6(SYS_munmap, table, SHM_TABLE_BYTES, 0, 0, 0, 0);
	if (claims_ok)
		fast6(SYS_munmap, claims, SHM_CLAIMS_BYTES, 0, 0, 0, 0);
}

