/* hostile: body[0] picks what accept does. 0: DONE; 1: segfault; 2: abort (SIGABRT to itself);
 * 3: exit_group(7) directly; 4: loop for ever; 5..8: fork, socket, execve, open: DONE when the
 * kernel refused the call, DROP when it was allowed; 10: map and touch 2 GB (DONE when the
 * address-space limit refused it). */
#include "pni.h"

static long sys3(long n, long a, long b, long c) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return r;
}

static long sys6(long n, long a, long b, long c, long d, long e, long f) {
    long r;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9) : "rcx", "r11", "memory");
    return r;
}

PNI_EXPORT(accept) int32_t accept(pni_handle_t capsule, uint32_t length) {
    static const char sh[] = "/bin/sh";
    static const char passwd[] = "/etc/passwd";
    long r;
    volatile uint32_t n = length;
    switch (length ? pni_seg_get_u8(capsule, 0) : 0) {
    case 1: *(volatile int *)0 = 1; return PNI_DROP;
    case 2: sys3(62, sys3(39, 0, 0, 0), 6, 0); return PNI_DROP;      /* kill(getpid(), SIGABRT) */
    case 3: sys3(231, 7, 0, 0); return PNI_DROP;                      /* exit_group(7) */
    case 4: for (;;) n = n * 1664525u + 1013904223u;
    case 5: r = sys3(57, 0, 0, 0); if (r == 0) sys3(231, 0, 0, 0); break;  /* fork */
    case 6: r = sys3(41, 2, 2, 0); break;                             /* socket(AF_INET, SOCK_DGRAM) */
    case 7: r = sys3(59, (long)sh, 0, 0); break;                      /* execve */
    case 8: r = sys3(2, (long)passwd, 0, 0); break;                   /* open */
    case 10: {                                                        /* mmap 2 GB, anonymous */
        r = sys6(9, 0, 2L << 30, 3, 0x22, -1, 0);
        if (r < 0 && r > -4096) return PNI_DONE;
        for (long i = 0; i < (2L << 30); i += 4096) ((volatile char *)r)[i] = 1;
        return PNI_DROP;
    }
    default: return PNI_DONE;
    }
    return r < 0 ? PNI_DONE : PNI_DROP;
}
