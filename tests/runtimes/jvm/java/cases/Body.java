package cases;

import java.util.ArrayList;
import java.util.List;
import org.pan.pni.PNI;
import org.pan.pni.PanCode;

/** Exercises the direct body path and a few host calls; see test_jvm_runtime.py. */
public final class Body implements PanCode {
    private final byte[] scratch = new byte[8];
    private final byte[] addr = new byte[16];
    private final List<Integer> seen = new ArrayList<>();

    @Override
    public int init(PNI pni) {
        byte[] msg = ("init " + seen.size()).getBytes(java.nio.charset.StandardCharsets.UTF_8);
        return pni.log(20, msg, 0, msg.length);
    }

    @Override
    public int accept(PNI pni, int capsule, int length) {
        int op = (int) pni.segGetU8(capsule, 0);
        switch (op) {
            case 1: { // bump a u32 at 4, swap two bytes at 8/9 via segRead/segWrite
                long v = pni.segGetU32(capsule, 4);
                pni.segSetU32(capsule, 4, (int) (v + 1));
                pni.segRead(capsule, 8, scratch, 0, 2);
                byte t = scratch[0];
                scratch[0] = scratch[1];
                scratch[1] = t;
                pni.segWrite(capsule, 8, scratch, 0, 2);
                return (int) pni.segGetU16(capsule, 8);
            }
            case 2: // out of range reads are statuses, not exceptions
                return (int) pni.segGetU32(capsule, length - 2);
            case 3: { // soft state through the host
                byte[] key = {'k'};
                int n = pni.stateGet(key, 0, 1, scratch, 0, 8);
                long count = n == 8 ? org.pan.pni.PniBytes.getU64(scratch, 0) : 0;
                org.pan.pni.PniBytes.putU64(scratch, 0, count + 1);
                pni.statePut(key, 0, 1, scratch, 0, 8, 0);
                return (int) count + 1;
            }
            case 4: { // allocate a segment, copy our address in, send it
                pni.nodeAddress(addr);
                int seg = (int) pni.segAlloc(16);
                pni.segWrite(seg, 0, addr, 0, 16);
                seen.add(seg);
                return pni.sendToward(addr, seg);
            }
            case 5: // checksums computed in Java on the body
                return (int) pni.crc32(capsule, 0, length) ^ pni.checksumInet(capsule, 0, length);
            case 6: // a code exception
                throw new IllegalStateException("op 6 " + length);
            default:
                return 0;
        }
    }

    @Override
    public long export(PNI pni, String name, long a0, long a1) {
        return "add".equals(name) ? a0 + a1 : org.pan.pni.PniStatus.NOT_FOUND;
    }
}
