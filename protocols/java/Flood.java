// flood: a sender streams data capsules to `dest`, which counts them per flow and reports
// back every `report_every` capsules (docs/protocols.md).

import org.pan.pni.PNI;
import org.pan.pni.PanCode;
import org.pan.pni.PniBytes;
import org.pan.pni.PniStatus;
import org.pan.pni.Verdict;

import pan.protocols.FloodHdr;

public final class Flood implements PanCode {
    // the per-flow record under "flow" + u32 flow, big-endian:
    // count u32 @0, bytes u64 @4, start_ns u64 @12, report_every u32 @20, pad u32 @24
    private static final int RECORD_SIZE = 28;
    private static final int FORWARD = Verdict.forward(0);

    // reused for every capsule: the code handles one capsule at a time
    private final FloodHdr hdr = new FloodHdr();
    private final FloodHdr report = new FloodHdr();
    private final byte[] scratch = new byte[FloodHdr.SIZE];
    private final byte[] self = new byte[16];
    private final byte[] key = {'f', 'l', 'o', 'w', 0, 0, 0, 0};
    private final byte[] rec = new byte[RECORD_SIZE];

    @Override
    public int accept(PNI pni, int capsule, int length) {
        FloodHdr h = hdr;
        if (length < FloodHdr.SIZE || h.read(pni, capsule, 0, scratch) != PniStatus.OK) {
            return Verdict.DROP;
        }
        pni.nodeAddress(self);
        if (pni.envOriginKind() == 1) {
            PniBytes.addrCopy(h.src, self);
            if (h.write(pni, capsule, 0, scratch) != PniStatus.OK) {
                return Verdict.DROP;
            }
        }
        if (!PniBytes.addrEquals(self, h.dest)) {
            return FORWARD;
        }
        PniBytes.putU32(key, 4, h.flow);
        if (h.kind == 0) {
            recordStart(pni, h.reportEvery);
            pni.statePut(key, 0, key.length, rec, 0, RECORD_SIZE, 0);
            return Verdict.DONE;
        }
        if (h.kind == 2) {
            return FORWARD;
        }
        if (h.kind != 1) {
            return Verdict.DROP;
        }
        if (pni.stateGet(key, 0, key.length, rec, 0, RECORD_SIZE) != RECORD_SIZE) {
            recordStart(pni, h.reportEvery);
        }
        long count = (PniBytes.getU32(rec, 0) + 1) & 0xffffffffL;
        long every = PniBytes.getU32(rec, 20);
        PniBytes.putU32(rec, 0, count);
        PniBytes.putU64(rec, 4, PniBytes.getU64(rec, 4) + (length & 0xffffffffL));
        if (every != 0 && count % every == 0) {
            sendReport(pni, h);
        }
        pni.statePut(key, 0, key.length, rec, 0, RECORD_SIZE, 0);
        return Verdict.DONE;
    }

    private void recordStart(PNI pni, long reportEvery) {
        for (int i = 0; i < RECORD_SIZE; i++) {
            rec[i] = 0;
        }
        PniBytes.putU64(rec, 12, pni.nodeNowNs());
        PniBytes.putU32(rec, 20, reportEvery);
    }

    private void sendReport(PNI pni, FloodHdr h) {
        long seg = pni.segAlloc(FloodHdr.SIZE);
        if (seg < 0) {
            return;
        }
        FloodHdr r = report;
        PniBytes.addrCopy(r.dest, h.src);
        r.port = h.port;
        r.kind = 2;
        r.flags = 0;
        PniBytes.addrCopy(r.src, self);
        r.flow = h.flow;
        r.seq = h.seq;
        r.count = PniBytes.getU32(rec, 0);
        r.reportEvery = PniBytes.getU32(rec, 20);
        r.bytes = PniBytes.getU64(rec, 4);
        r.elapsedNs = pni.nodeNowNs() - PniBytes.getU64(rec, 12);
        if (r.write(pni, (int) seg, 0, scratch) == PniStatus.OK) {
            pni.sendToward(h.src, (int) seg);
        }
    }
}
