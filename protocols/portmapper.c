/* portmapper: binds ports to the application links that ask for them; the node calls the
 * `lookup` export to find where to deliver (docs/protocols.md).
 * Exports: lookup */
#include "pni.h"
#include "headers.h"

static void port_key(uint8_t key[6], uint32_t port) {
    key[0] = 'p';
    key[1] = 'o';
    key[2] = 'r';
    key[3] = 't';
    pni_be16_put(key + 4, (uint16_t)port);
}

PNI_EXPORT(accept) int32_t accept(pni_handle_t capsule, uint32_t length) {
    pan_portmap_req req;
    uint8_t key[6];
    uint8_t token[8];
    if (pni_env_origin_kind() != 1) {
        return PNI_DROP;
    }
    if (length < PAN_PORTMAP_REQ_SIZE || pan_portmap_req_read(capsule, 0, &req) != PNI_OK) {
        return PNI_DROP;
    }
    port_key(key, req.port);
    if (req.op == 0) {
        pni_link_t link = pni_env_origin_link();
        if (link < 0) return (int32_t)link;
        pni_be64_put(token, (uint64_t)link);
        int32_t r = pni_state_put(key, sizeof key, token, sizeof token, 0);
        return r < 0 ? r : PNI_DONE;
    }
    if (req.op == 1) {
        pni_state_delete(key, sizeof key);
        return PNI_DONE;
    }
    return PNI_DROP;
}

/* The link token bound to port A0 (A1 unused), or PNI_NOT_FOUND. */
PNI_EXPORT(lookup) int64_t lookup(int64_t a0, int64_t a1) {
    uint8_t key[6];
    uint8_t token[8];
    (void)a1;
    if (a0 < 0 || a0 > 0xffff) return PNI_NOT_FOUND;
    port_key(key, (uint32_t)a0);
    int32_t n = pni_state_get(key, sizeof key, token, sizeof token);
    if (n < 0) return n;
    if (n != (int32_t)sizeof token) return PNI_NOT_FOUND;
    return (int64_t)pni_be64_get(token);
}
