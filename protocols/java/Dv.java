// dv: distance-vector routing as mobile code (docs/protocols.md, "dv"), for jvm.
// The same protocol as protocols/dv.py and protocols/dv.c; keep the three in step.
//
// Body, big-endian: type u8 @0 (0 = tick from an application: a period has passed,
// 1 = advertisement from a neighbour), reserved u8 @1, entry count u16 @2, then entries of
// 18 bytes: destination address (16), metric u16. Metric 16 means unreachable.
//
// Soft state: "tick" is the u32 count of ticks this node has seen; "table" holds rows of 40
// bytes: destination (16), next hop (16), metric u16, reserved u16, seen u32 (the tick at
// which the next hop last confirmed the route, or at which it was withdrawn).
//
// The PNI has no timer, so periods come from outside (pan lab ticks every node each period).
// On a tick a node withdraws each route its next hop has not re-advertised for EXPIRE ticks,
// forgets each route withdrawn FLUSH ticks ago, and advertises its table to every neighbour
// (itself at metric 0; routes learned through that neighbour poisoned). An advertisement
// that changes the table is passed on at once.

import org.pan.pni.PNI;
import org.pan.pni.PanCode;
import org.pan.pni.PniBytes;
import org.pan.pni.PniStatus;
import org.pan.pni.Verdict;

public final class Dv implements PanCode {
    private static final int INF = 16;
    private static final int ENTRY = 18;
    private static final int ROW = 40;
    private static final int MAX_ROWS = 256;
    private static final int EXPIRE = 3;
    private static final int FLUSH = 3;
    private static final int MTU_FALLBACK = 1200;
    private static final int MAX_BODY = 9216;

    // reused for every capsule: the code handles one capsule at a time
    private final byte[] table = new byte[ROW * MAX_ROWS];
    private int rows;
    private final byte[] body = new byte[MAX_BODY];
    private final byte[] head = new byte[4];
    private final byte[] raw = new byte[4];
    private final byte[] me = new byte[16];
    private final byte[] prev = new byte[16];
    private final byte[] nb = new byte[16];
    private final byte[] dest = new byte[16];
    private final byte[] hop = new byte[16];
    private static final byte[] KEY_TICK = {'t', 'i', 'c', 'k'};
    private static final byte[] KEY_TABLE = {'t', 'a', 'b', 'l', 'e'};

    private static boolean same(byte[] a, int ao, byte[] b, int bo) {
        for (int i = 0; i < 16; i++) {
            if (a[ao + i] != b[bo + i]) {
                return false;
            }
        }
        return true;
    }

    private long loadTick(PNI pni) {
        if (pni.stateGet(KEY_TICK, 0, KEY_TICK.length, raw, 0, 4) != 4) {
            return 0;
        }
        return PniBytes.getU32(raw, 0);
    }

    private void loadTable(PNI pni) {
        int n = pni.stateGet(KEY_TABLE, 0, KEY_TABLE.length, table, 0, table.length);
        if (n < 0) {
            n = 0;
        }
        rows = Math.min(n, table.length) / ROW;
    }

    private void saveTable(PNI pni) {
        // a full soft state loses the table; the next advertisements fill it again
        pni.statePut(KEY_TABLE, 0, KEY_TABLE.length, table, 0, rows * ROW, 0);
    }

    private int rowOf(byte[] b, int off) {
        for (int r = 0; r < rows; r++) {
            if (same(table, r * ROW, b, off)) {
                return r * ROW;
            }
        }
        return -1;
    }

    private void sendBody(PNI pni, int count) {
        int len = 4 + count * ENTRY;
        body[0] = 1;
        body[1] = 0;
        PniBytes.putU16(body, 2, count);
        long seg = pni.segAlloc(len);
        if (seg < 0) {
            return; // no room this time: the next period advertises again
        }
        if (pni.segWrite((int) seg, 0, body, 0, len) == len) {
            // a neighbour that is gone or a spent budget: the next period advertises again
            pni.sendNeighbor(nb, (int) seg);
        }
        pni.segRelease((int) seg);
    }

    private void advertise(PNI pni) {
        int count = pni.neighborCount();
        for (int i = 0; i < count; i++) {
            if (pni.neighborAddress(i, nb) < 0) {
                continue;
            }
            int mtu = pni.nodeMtu(nb);
            int per = Math.min(mtu < 0 ? MTU_FALLBACK : mtu, MAX_BODY);
            per = Math.max(1, per > 4 ? (per - 4) / ENTRY : 0);
            System.arraycopy(me, 0, body, 4, 16);
            PniBytes.putU16(body, 20, 0);
            int k = 1;
            for (int r = 0; r < rows; r++) {
                int o = r * ROW;
                int metric = PniBytes.getU16(table, o + 32);
                if (same(table, o + 16, nb, 0)) {
                    metric = INF;
                }
                if (k >= per) {
                    sendBody(pni, k);
                    k = 0;
                }
                System.arraycopy(table, o, body, 4 + k * ENTRY, 16);
                PniBytes.putU16(body, 4 + k * ENTRY + 16, metric);
                k++;
            }
            if (k > 0) {
                sendBody(pni, k);
            }
        }
    }

    private void expire(PNI pni, long tick) {
        int w = 0;
        for (int r = 0; r < rows; r++) {
            int o = r * ROW;
            int metric = PniBytes.getU16(table, o + 32);
            long seen = PniBytes.getU32(table, o + 36);
            long age = (tick - seen) & 0xffffffffL;
            if (metric < INF && age > EXPIRE) {
                PniBytes.putU16(table, o + 32, INF);
                PniBytes.putU32(table, o + 36, tick);
                System.arraycopy(table, o, dest, 0, 16);
                System.arraycopy(table, o + 16, hop, 0, 16);
                pni.routeSet(dest, hop, INF);
            } else if (metric >= INF && age > FLUSH) {
                continue; // forgotten
            }
            if (w != r) {
                System.arraycopy(table, o, table, w * ROW, ROW);
            }
            w++;
        }
        rows = w;
    }

    // Merge the COUNT entries of the advertisement in `body` from `prev`; true when the table changed.
    private boolean merge(PNI pni, int count, long tick) {
        boolean changed = false;
        for (int i = 0; i < count; i++) {
            int e = 4 + i * ENTRY;
            if (same(body, e, me, 0)) {
                continue;
            }
            int metric = Math.min(PniBytes.getU16(body, e + 16) + 1, INF);
            int o = rowOf(body, e);
            if (o < 0) {
                if (metric >= INF || rows >= MAX_ROWS) {
                    continue;
                }
                o = rows * ROW;
                rows++;
                System.arraycopy(body, e, table, o, 16);
            } else {
                int cur = PniBytes.getU16(table, o + 32);
                if (same(table, o + 16, prev, 0)) {
                    if (metric >= INF) {
                        if (cur >= INF) {
                            continue; // already withdrawn: let it age out
                        }
                    } else if (cur == metric) {
                        PniBytes.putU32(table, o + 36, tick); // confirmed
                        continue;
                    }
                } else if (metric >= cur) {
                    continue;
                }
            }
            System.arraycopy(prev, 0, table, o + 16, 16);
            PniBytes.putU16(table, o + 32, metric);
            PniBytes.putU16(table, o + 34, 0);
            PniBytes.putU32(table, o + 36, tick);
            changed = true;
            System.arraycopy(body, e, dest, 0, 16);
            pni.routeSet(dest, prev, metric); // a static route wins, or the node's table is full
        }
        return changed;
    }

    @Override
    public int accept(PNI pni, int capsule, int length) {
        if (length < 4 || pni.segRead(capsule, 0, head, 0, 4) != 4) {
            return Verdict.DROP;
        }
        int count = PniBytes.getU16(head, 2);
        if (pni.nodeAddress(me) < 0) {
            return Verdict.DROP;
        }
        if (head[0] == 0) {
            if (pni.envOriginKind() != 1) {
                return Verdict.DROP;
            }
            long tick = (loadTick(pni) + 1) & 0xffffffffL;
            PniBytes.putU32(raw, 0, tick);
            if (pni.statePut(KEY_TICK, 0, KEY_TICK.length, raw, 0, 4, 0) != PniStatus.OK) {
                return Verdict.DROP;
            }
            loadTable(pni);
            expire(pni, tick);
            saveTable(pni);
            advertise(pni);
            return Verdict.DONE;
        }
        int len = 4 + count * ENTRY;
        if (head[0] != 1 || pni.envOriginKind() != 0 || length < len || len > MAX_BODY) {
            return Verdict.DROP;
        }
        if (pni.segRead(capsule, 0, body, 0, len) != len || pni.envPrevHop(prev) < 0) {
            return Verdict.DROP;
        }
        long tick = loadTick(pni);
        loadTable(pni);
        boolean changed = merge(pni, count, tick);
        saveTable(pni);
        if (changed) {
            advertise(pni);
        }
        return Verdict.DONE;
    }
}
