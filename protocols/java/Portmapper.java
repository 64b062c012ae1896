// portmapper: binds ports to the application links that ask for them; the node calls the
// `lookup` export to find where to deliver (docs/protocols.md).
// Exports: lookup

import org.pan.pni.PNI;
import org.pan.pni.PanCode;
import org.pan.pni.PniBytes;
import org.pan.pni.PniStatus;
import org.pan.pni.Verdict;

import pan.protocols.PortmapReq;

public final class Portmapper implements PanCode {
    // reused for every capsule: the code handles one capsule at a time
    private final PortmapReq req = new PortmapReq();
    private final byte[] scratch = new byte[PortmapReq.SIZE];
    private final byte[] key = {'p', 'o', 'r', 't', 0, 0};
    private final byte[] token = new byte[8];

    @Override
    public int accept(PNI pni, int capsule, int length) {
        if (pni.envOriginKind() != 1) {
            return Verdict.DROP;
        }
        if (length < PortmapReq.SIZE || req.read(pni, capsule, 0, scratch) != PniStatus.OK) {
            return Verdict.DROP;
        }
        PniBytes.putU16(key, 4, req.port);
        if (req.op == 0) {
            long link = pni.envOriginLink();
            if (link < 0) {
                return (int) link;
            }
            PniBytes.putU64(token, 0, link);
            int r = pni.statePut(key, 0, key.length, token, 0, 8, 0);
            return r < 0 ? r : Verdict.DONE;
        }
        if (req.op == 1) {
            pni.stateDelete(key, 0, key.length);
            return Verdict.DONE;
        }
        return Verdict.DROP;
    }

    @Override
    public long export(PNI pni, String name, long a0, long a1) {
        if (!"lookup".equals(name)) {
            return PniStatus.NOT_FOUND;
        }
        return lookup(pni, a0);
    }

    /** The link token bound to port a0, or NOT_FOUND. */
    public long lookup(PNI pni, long a0) {
        if (a0 < 0 || a0 > 0xffff) {
            return PniStatus.NOT_FOUND;
        }
        PniBytes.putU16(key, 4, (int) a0);
        int n = pni.stateGet(key, 0, key.length, token, 0, 8);
        if (n < 0) {
            return n;
        }
        if (n != 8) {
            return PniStatus.NOT_FOUND;
        }
        return PniBytes.getU64(token, 0);
    }
}
