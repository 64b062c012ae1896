/* Exercises every relocation kind gcc emits for C: globals, statics, read-only data,
 * string literals, function pointers, calls between functions, PNI calls, libc helpers and
 * extern data and functions of a dependency. */
#include "pni.h"

typedef __SIZE_TYPE__ size_t;
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);

extern int64_t shared_counter;                  /* data of the dependency */
extern int64_t dep_add(int64_t a0, int64_t a1); /* function of the dependency */

static int32_t counter = 7;
int32_t table[4] = {10, 20, 30, 40};
static const char greeting[] = "hello, pan";
const char *message = "message";
int32_t zeroed;
static int32_t twice(int32_t x) { return 2 * x; }
static int32_t thrice(int32_t x) { return 3 * x; }
int32_t (*const ops[2])(int32_t) = {twice, thrice};
int32_t (*op)(int32_t) = twice;

__attribute__((noinline)) uint32_t address_low(void) { return (uint32_t)(uintptr_t)&table[1]; }
__attribute__((noinline)) int64_t address_full(void) { return (int64_t)(uintptr_t)&table[1]; }

int64_t probe(int64_t which, int64_t arg) {
    char buf[16];
    switch (which) {
    case 0: return ++counter;
    case 1: return table[arg & 3];
    case 2: return greeting[arg];
    case 3: return message[arg];
    case 4: return op((int32_t)arg) + ops[1]((int32_t)arg);
    case 5: zeroed += (int32_t)arg; return zeroed;
    case 6: return shared_counter + arg;
    case 7: return dep_add(arg, 1);
    case 8: memset(buf, 0, sizeof buf); memcpy(buf, greeting, 5); return buf[4] + buf[5];
    case 9: return pni_log(20, greeting, 5);
    case 10: return address_low() == (address_full() & 0xffffffff);
    case 11: shared_counter += arg; return shared_counter;
    default: return -1;
    }
}

PNI_EXPORT(accept) int32_t accept(pni_handle_t capsule, uint32_t length) {
    (void)capsule;
    return PNI_FORWARD(length & 0xff);
}
