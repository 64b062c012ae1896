/* dv: distance-vector routing as mobile code (docs/protocols.md, "dv"), for native and wasm.
 * The same protocol as protocols/dv.py (restricted_py) and protocols/java/Dv.java (jvm);
 * keep the three in step.
 *
 * Body, big-endian: type u8 @0 (0 = tick: an application tells this node a period has
 * passed, 1 = advertisement from a neighbour), reserved u8 @1, entry count u16 @2, then
 * entries of 18 bytes: destination address (16), metric u16. Metric 16 means unreachable.
 *
 * Soft state: "tick" is the u32 count of ticks this node has seen; "table" holds rows of 40
 * bytes: destination (16), next hop (16), metric u16, reserved u16, seen u32 (the tick at
 * which the next hop last confirmed the route, or at which it was withdrawn).
 *
 * The PNI has no timer, so periods come from outside (pan lab sends every node a tick each
 * period). On a tick a node withdraws each route its next hop has not re-advertised for
 * EXPIRE ticks, forgets each route withdrawn FLUSH ticks ago, and advertises its table to
 * every neighbour (itself at metric 0; routes learned through that neighbour poisoned). An
 * advertisement that changes the table is passed on at once. */
#include "pni.h"

#define INF 16u
#define ENTRY 18u
#define ROW 40u
#define MAX_ROWS 256u
#define EXPIRE 3u
#define FLUSH 3u
#define MTU_FALLBACK 1200u
/* the largest advertisement body read or sent: the node's MTU bounds what arrives */
#define MAX_BODY 9216u

/* The code handles one capsule at a time, so its working buffers are static (wasm's stack
 * is small). */
static uint8_t table[ROW * MAX_ROWS];
static uint32_t rows;
static uint8_t body[MAX_BODY];

static const uint8_t KEY_TICK[4] = {'t', 'i', 'c', 'k'};
static const uint8_t KEY_TABLE[5] = {'t', 'a', 'b', 'l', 'e'};

static uint32_t load_tick(void) {
    uint8_t raw[4];
    if (pni_state_get(KEY_TICK, sizeof KEY_TICK, raw, sizeof raw) != 4) return 0;
    return pni_be32_get(raw);
}

static void load_table(void) {
    int32_t n = pni_state_get(KEY_TABLE, sizeof KEY_TABLE, table, sizeof table);
    if (n < 0) n = 0;
    if ((uint32_t)n > sizeof table) n = (int32_t)sizeof table;
    rows = (uint32_t)n / ROW;
}

static void save_table(void) {
    /* a full soft state loses the table; the next advertisements fill it again */
    (void)pni_state_put(KEY_TABLE, sizeof KEY_TABLE, table, rows * ROW, 0);
}

static uint8_t *row_of(const uint8_t *dest) {
    for (uint32_t i = 0; i < rows; i++) {
        if (pni_addr_eq(table + i * ROW, dest)) return table + i * ROW;
    }
    return 0;
}

static void row_set(uint8_t *row, const uint8_t *next_hop, uint32_t metric, uint32_t seen) {
    pni_addr_copy(row + 16, next_hop);
    pni_be16_put(row + 32, (uint16_t)metric);
    pni_be16_put(row + 34, 0);
    pni_be32_put(row + 36, seen);
}

static void send_body(const uint8_t *nb, uint32_t count) {
    uint32_t len = 4 + count * ENTRY;
    body[0] = 1;
    body[1] = 0;
    pni_be16_put(body + 2, (uint16_t)count);
    int64_t seg = pni_seg_alloc(len);
    if (seg < 0) return; /* no room this time: the next period advertises again */
    if (pni_seg_write((pni_handle_t)seg, 0, body, len) == (int32_t)len) {
        /* a neighbour that is gone or a spent budget: the next period advertises again */
        (void)pni_send_neighbor(nb, (pni_handle_t)seg);
    }
    (void)pni_seg_release((pni_handle_t)seg);
}

static void advertise(const uint8_t *me) {
    uint8_t nb[PNI_ADDR_SIZE];
    int32_t count = pni_neighbor_count();
    for (int32_t i = 0; i < count; i++) {
        if (pni_neighbor_address((uint32_t)i, nb) < 0) continue;
        int32_t mtu = pni_node_mtu(nb);
        uint32_t per = (mtu < 0 ? MTU_FALLBACK : (uint32_t)mtu);
        if (per > MAX_BODY) per = MAX_BODY;
        per = per > 4 ? (per - 4) / ENTRY : 0;
        if (per == 0) per = 1;
        uint32_t k = 0;
        pni_addr_copy(body + 4, me);
        pni_be16_put(body + 20, 0);
        k = 1;
        for (uint32_t r = 0; r < rows; r++) {
            const uint8_t *row = table + r * ROW;
            uint32_t metric = pni_be16_get(row + 32);
            if (pni_addr_eq(row + 16, nb)) metric = INF;
            if (k >= per) {
                send_body(nb, k);
                k = 0;
            }
            pni_addr_copy(body + 4 + k * ENTRY, row);
            pni_be16_put(body + 4 + k * ENTRY + 16, (uint16_t)metric);
            k++;
        }
        if (k > 0) send_body(nb, k);
    }
}

static void expire(uint32_t tick) {
    uint32_t w = 0;
    for (uint32_t r = 0; r < rows; r++) {
        uint8_t *row = table + r * ROW;
        uint32_t metric = pni_be16_get(row + 32);
        uint32_t seen = pni_be32_get(row + 36);
        if (metric < INF && tick - seen > EXPIRE) {
            pni_be16_put(row + 32, (uint16_t)INF);
            pni_be32_put(row + 36, tick);
            (void)pni_route_set(row, row + 16, INF);
        } else if (metric >= INF && tick - seen > FLUSH) {
            continue; /* forgotten */
        }
        if (w != r) {
            for (uint32_t j = 0; j < ROW; j++) table[w * ROW + j] = row[j];
        }
        w++;
    }
    rows = w;
}

/* Merge the COUNT entries of the advertisement in `body` from PREV; nonzero when the table changed. */
static int merge(const uint8_t *me, const uint8_t *prev, uint32_t count, uint32_t tick) {
    int changed = 0;
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *e = body + 4 + i * ENTRY;
        if (pni_addr_eq(e, me)) continue;
        uint32_t metric = pni_be16_get(e + 16) + 1u;
        if (metric > INF) metric = INF;
        uint8_t *row = row_of(e);
        if (row == 0) {
            if (metric >= INF || rows >= MAX_ROWS) continue;
            row = table + rows * ROW;
            rows++;
            pni_addr_copy(row, e);
        } else {
            uint32_t cur = pni_be16_get(row + 32);
            if (pni_addr_eq(row + 16, prev)) {
                if (metric >= INF) {
                    if (cur >= INF) continue; /* already withdrawn: let it age out */
                } else if (cur == metric) {
                    pni_be32_put(row + 36, tick); /* confirmed */
                    continue;
                }
            } else if (metric >= cur) {
                continue;
            }
        }
        row_set(row, prev, metric, tick);
        changed = 1;
        (void)pni_route_set(e, prev, metric); /* a static route wins, or the node's table is full */
    }
    return changed;
}

PNI_EXPORT(accept) int32_t accept(pni_handle_t capsule, uint32_t length) {
    uint8_t me[PNI_ADDR_SIZE];
    uint8_t prev[PNI_ADDR_SIZE];
    uint8_t head[4];
    if (length < 4 || pni_seg_read(capsule, 0, head, 4) != 4) return PNI_DROP;
    uint32_t count = pni_be16_get(head + 2);
    if (pni_node_address(me) < 0) return PNI_DROP;
    if (head[0] == 0) {
        if (pni_env_origin_kind() != 1) return PNI_DROP;
        uint8_t raw[4];
        uint32_t tick = load_tick() + 1u;
        pni_be32_put(raw, tick);
        if (pni_state_put(KEY_TICK, sizeof KEY_TICK, raw, sizeof raw, 0) != PNI_OK) return PNI_DROP;
        load_table();
        expire(tick);
        save_table();
        advertise(me);
        return PNI_DONE;
    }
    uint32_t len = 4 + count * ENTRY;
    if (head[0] != 1 || pni_env_origin_kind() != 0 || length < len || len > MAX_BODY) return PNI_DROP;
    if (pni_seg_read(capsule, 0, body, len) != (int32_t)len) return PNI_DROP;
    if (pni_env_prev_hop(prev) < 0) return PNI_DROP;
    uint32_t tick = load_tick();
    load_table();
    int changed = merge(me, prev, count, tick);
    save_table();
    if (changed) advertise(me);
    return PNI_DONE;
}
