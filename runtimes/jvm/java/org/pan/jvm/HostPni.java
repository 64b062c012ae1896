package org.pan.jvm;

import java.nio.ByteBuffer;
import java.util.zip.CRC32;
import org.pan.pni.PNI;
import org.pan.pni.PniStatus;

/**
 * The PNI a code object sees. Reads and writes of the capsule body (handle 1) go straight to
 * the direct ByteBuffer over the node's segment memory; everything else calls the node's
 * PniHost in Python through the Upcalls proxy. One instance per loaded code object.
 */
public final class HostPni implements PNI {
    static final int BODY = 1;

    private final Upcalls up;
    private ByteBuffer body; // null: the body is not directly mapped; use the host
    private int base;
    private int len;
    // batch bookkeeping: which capsule runs now, which one the host has selected
    int index;
    int selected;
    // the node's UDP fast path: while fastOn, origin, previous hop and node address come from
    // its context (little-endian pan_fast_ctx: origin i32 @0, has_prev_hop i32 @4,
    // node address @8, previous hop @24), not from the host
    boolean fastOn;
    ByteBuffer fastCtx;
    private final CRC32 crc = new CRC32();

    public HostPni(Upcalls up) {
        this.up = up;
    }

    void setBody(ByteBuffer b, int offset, int length) {
        body = b;
        base = offset;
        len = length;
    }

    private Upcalls host() {
        if (index != selected) {
            up.select(index);
            selected = index;
        }
        return up;
    }

    private boolean fast(int seg) {
        return seg == BODY && body != null;
    }

    private boolean inside(int offset, int n) {
        return offset >= 0 && n >= 0 && offset <= len - n;
    }

    private static boolean arrayOk(byte[] a, int off, int n) {
        return a != null && off >= 0 && n >= 0 && off <= a.length - n;
    }

    // ---- segments ----

    @Override
    public long segLength(int seg) {
        return fast(seg) ? len : host().segLength(seg);
    }

    @Override
    public int segRead(int seg, int offset, byte[] dst, int dstOff, int dstLen) {
        if (!fast(seg)) return host().segRead(seg, offset, dst, dstOff, dstLen);
        if (!arrayOk(dst, dstOff, dstLen) || !inside(offset, dstLen)) return PniStatus.OUT_OF_RANGE;
        body.get(base + offset, dst, dstOff, dstLen);
        return dstLen;
    }

    @Override
    public int segWrite(int seg, int offset, byte[] src, int srcOff, int srcLen) {
        if (!fast(seg)) return host().segWrite(seg, offset, src, srcOff, srcLen);
        if (!arrayOk(src, srcOff, srcLen) || !inside(offset, srcLen)) return PniStatus.OUT_OF_RANGE;
        body.put(base + offset, src, srcOff, srcLen);
        return srcLen;
    }

    @Override
    public long segGetU8(int seg, int offset) {
        if (!fast(seg)) return host().segGetU8(seg, offset);
        if (!inside(offset, 1)) return PniStatus.OUT_OF_RANGE;
        return body.get(base + offset) & 0xff;
    }

    @Override
    public long segGetU16(int seg, int offset) {
        if (!fast(seg)) return host().segGetU16(seg, offset);
        if (!inside(offset, 2)) return PniStatus.OUT_OF_RANGE;
        return body.getShort(base + offset) & 0xffff;
    }

    @Override
    public long segGetU32(int seg, int offset) {
        if (!fast(seg)) return host().segGetU32(seg, offset);
        if (!inside(offset, 4)) return PniStatus.OUT_OF_RANGE;
        return body.getInt(base + offset) & 0xffffffffL;
    }

    @Override
    public int segSetU8(int seg, int offset, int value) {
        if (!fast(seg)) return host().segSetU8(seg, offset, value);
        if (!inside(offset, 1)) return PniStatus.OUT_OF_RANGE;
        if ((value & ~0xff) != 0) return PniStatus.BAD_ARGUMENT;
        body.put(base + offset, (byte) value);
        return PniStatus.OK;
    }

    @Override
    public int segSetU16(int seg, int offset, int value) {
        if (!fast(seg)) return host().segSetU16(seg, offset, value);
        if (!inside(offset, 2)) return PniStatus.OUT_OF_RANGE;
        if ((value & ~0xffff) != 0) return PniStatus.BAD_ARGUMENT;
        body.putShort(base + offset, (short) value);
        return PniStatus.OK;
    }

    @Override
    public int segSetU32(int seg, int offset, int value) {
        if (!fast(seg)) return host().segSetU32(seg, offset, value);
        if (!inside(offset, 4)) return PniStatus.OUT_OF_RANGE;
        body.putInt(base + offset, value);
        return PniStatus.OK;
    }

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
    public int envOriginKind() {
        return fastOn ? fastCtx.getInt(0) : host().envOriginKind();
    }

    @Override
    public long envOriginLink() {
        return host().envOriginLink();
    }

    @Override
    public int envPrevHop(byte[] dst) {
        if (!fastOn) return host().envPrevHop(dst);
        if (!arrayOk(dst, 0, 16)) return PniStatus.OUT_OF_RANGE;
        if (fastCtx.getInt(4) == 0) return PniStatus.NOT_FOUND;
        fastCtx.get(24, dst, 0, 16);
        return PniStatus.OK;
    }

    @Override
    public int nodeAddress(byte[] dst) {
        if (!fastOn) return host().nodeAddress(dst);
        if (!arrayOk(dst, 0, 16)) return PniStatus.OUT_OF_RANGE;
        fastCtx.get(8, dst, 0, 16);
        return PniStatus.OK;
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
