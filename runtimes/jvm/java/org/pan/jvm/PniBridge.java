package org.pan.jvm;

import java.nio.ByteBuffer;
import java.util.zip.CRC32;
import org.pan.pni.PniStatus;

/**
 * The PNI a code object sees. The hot calls (generated PniHot) answer from the direct
 * ByteBuffer over the node's segment memory and the fast path's context; everything else
 * calls the node's PniServer in Python through the Upcalls proxy. One instance per loaded
 * code object.
 */
public final class PniBridge extends PniHot {
    private final Upcalls up;
    // batch bookkeeping: which capsule runs now, which one the host has selected
    int index;
    int selected;
    private final CRC32 crc = new CRC32();

    public PniBridge(Upcalls up) {
        this.up = up;
    }

    @Override
    Upcalls host() {
        if (index != selected) {
            up.select(index);
            selected = index;
        }
        return up;
    }

    // ---- segments (the hot ones are in PniHot) ----

    @Override
    public long segAlloc(int length) {
        return host().segAlloc(length);
    }

    @Override
    public long segSlice(int seg, int offset, int length) {
        return host().segSlice(seg, offset, length);
    }

    @Override
    public long segConcat(int head, int tail) {
        return host().segConcat(head, tail);
    }

    @Override
    public int segCopy(int dst, int dstOffset, int src, int srcOffset, int length) {
        if (fast(dst) && fast(src)) {
            if (!inside(dstOffset, length) || !inside(srcOffset, length)) return PniStatus.OUT_OF_RANGE;
            // overlapping ranges go through a temporary array so the copy behaves like memmove
            ByteBuffer from = body.duplicate();
            from.limit(base + srcOffset + length).position(base + srcOffset);
            ByteBuffer to = body.duplicate();
            to.position(base + dstOffset);
            if (srcOffset < dstOffset + length && dstOffset < srcOffset + length) {
                byte[] tmp = new byte[length];
                from.get(tmp);
                to.put(tmp);
            } else {
                to.put(from);
            }
            return length;
        }
        return host().segCopy(dst, dstOffset, src, srcOffset, length);
    }

    @Override
    public int segRelease(int seg) {
        return host().segRelease(seg);
    }

    // ---- capsule, environment, node ----

    @Override
    public int capsuleHopLimit() {
        return host().capsuleHopLimit();
    }

    @Override
    public int capsuleHome(byte[] dst) {
        return host().capsuleHome(dst);
    }

    @Override
    public int capsuleCodeName(byte[] dst) {
        return host().capsuleCodeName(dst);
    }

    @Override
    public long envOriginLink() {
        return host().envOriginLink();
    }

    @Override
    public long nodeNowNs() {
        return host().nodeNowNs();
    }

    @Override
    public int nodeMtu(byte[] dest) {
        return host().nodeMtu(dest);
    }

    // ---- send, routing, state ----

    @Override
    public int sendToward(byte[] dest, int b) {
        return host().sendToward(dest, b);
    }

    @Override
    public int sendNeighbor(byte[] neighbor, int b) {
        return host().sendNeighbor(neighbor, b);
    }

    @Override
    public int deliver(long link, int port, int b) {
        return host().deliver(link, port, b);
    }

    @Override
    public int neighborCount() {
        return host().neighborCount();
    }

    @Override
    public int neighborAddress(int i, byte[] dst) {
        return host().neighborAddress(i, dst);
    }

    @Override
    public int routeLookup(byte[] dest, byte[] nextHop) {
        return host().routeLookup(dest, nextHop);
    }

    @Override
    public int routeSet(byte[] dest, byte[] nextHop, int metric) {
        return host().routeSet(dest, nextHop, metric);
    }

    @Override
    public int stateGet(byte[] key, int keyOff, int keyLen, byte[] dst, int dstOff, int dstLen) {
        return host().stateGet(key, keyOff, keyLen, dst, dstOff, dstLen);
    }

    @Override
    public int statePut(byte[] key, int keyOff, int keyLen, byte[] value, int valueOff, int valueLen, int ttlMs) {
        return host().statePut(key, keyOff, keyLen, value, valueOff, valueLen, ttlMs);
    }

    @Override
    public int stateDelete(byte[] key, int keyOff, int keyLen) {
        return host().stateDelete(key, keyOff, keyLen);
    }

    @Override
    public int statePutSeg(byte[] key, int keyOff, int keyLen, int seg, int ttlMs) {
        return host().statePutSeg(key, keyOff, keyLen, seg, ttlMs);
    }

    @Override
    public long stateGetSeg(byte[] key, int keyOff, int keyLen) {
        return host().stateGetSeg(key, keyOff, keyLen);
    }

    @Override
    public int log(int level, byte[] message, int messageOff, int messageLen) {
        return host().log(level, message, messageOff, messageLen);
    }

    // ---- digests ----

    @Override
    public int checksumInet(int seg, int offset, int length) {
        if (!fast(seg)) return host().checksumInet(seg, offset, length);
        if (!inside(offset, length)) return PniStatus.OUT_OF_RANGE;
        long sum = 0;
        int p = base + offset;
        int end = p + length;
        for (; p + 1 < end; p += 2) sum += body.getShort(p) & 0xffff;
        if (p < end) sum += (body.get(p) & 0xff) << 8;
        while ((sum >>> 16) != 0) sum = (sum & 0xffff) + (sum >>> 16);
        return (int) (~sum & 0xffff);
    }

    @Override
    public long crc32(int seg, int offset, int length) {
        if (!fast(seg)) return host().crc32(seg, offset, length);
        if (!inside(offset, length)) return PniStatus.OUT_OF_RANGE;
        ByteBuffer view = body.duplicate();
        view.limit(base + offset + length).position(base + offset);
        crc.reset();
        crc.update(view);
        return crc.getValue();
    }

    @Override
    public int sha256(int seg, int offset, int length, byte[] dst) {
        return host().sha256(seg, offset, length, dst);
    }

    @Override
    public int hmacSha256(int seg, int offset, int length, byte[] key, int keyOff, int keyLen, byte[] dst) {
        return host().hmacSha256(seg, offset, length, key, keyOff, keyLen, dst);
    }

    @Override
    public long depCall(int dep, byte[] export, int exportOff, int exportLen, long a0, long a1) {
        return host().depCall(dep, export, exportOff, exportLen, a0, a1);
    }
}
