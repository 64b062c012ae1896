// ping: out to `dest`, bounced back to the sender with both timestamps (docs/protocols.md).

import org.pan.pni.PNI;
import org.pan.pni.PanCode;
import org.pan.pni.PniBytes;
import org.pan.pni.PniStatus;
import org.pan.pni.Verdict;

import pan.protocols.PingHdr;

public final class Ping implements PanCode {
    private static final byte[] KEY = {'p', 'i', 'n', 'g', 'e', 'd'};
    private static final int FORWARD = Verdict.forward(0);

    // reused for every capsule: the code handles one capsule at a time
    private final PingHdr hdr = new PingHdr();
    private final byte[] scratch = new byte[PingHdr.SIZE];
    private final byte[] self = new byte[16];
    private final byte[] value = new byte[8];

    @Override
    public int accept(PNI pni, int capsule, int length) {
        PingHdr h = hdr;
        if (length < PingHdr.SIZE || h.read(pni, capsule, 0, scratch) != PniStatus.OK) {
            return Verdict.DROP;
        }
        if (h.phase == 1) {
            return FORWARD;
        }
        if (h.phase != 0) {
            return Verdict.DROP;
        }
        if (pni.envOriginKind() == 1) {
            h.sentNs = pni.nodeNowNs();
            pni.nodeAddress(h.src);
            return h.write(pni, capsule, 0, scratch) == PniStatus.OK ? FORWARD : Verdict.DROP;
        }
        pni.nodeAddress(self);
        if (!PniBytes.addrEquals(self, h.dest)) {
            return FORWARD;
        }
        countPing(pni);
        h.phase = 1;
        h.bouncedNs = pni.nodeNowNs();
        PniBytes.addrCopy(h.dest, h.src);
        PniBytes.addrCopy(h.src, self);
        return h.write(pni, capsule, 0, scratch) == PniStatus.OK ? FORWARD : Verdict.DROP;
    }

    /** Add one to the big-endian u64 counter kept under "pinged". */
    private void countPing(PNI pni) {
        long count = 0;
        if (pni.stateGet(KEY, 0, KEY.length, value, 0, 8) == 8) {
            count = PniBytes.getU64(value, 0);
        }
        PniBytes.putU64(value, 0, count + 1);
        pni.statePut(KEY, 0, KEY.length, value, 0, 8, 0);
    }
}
