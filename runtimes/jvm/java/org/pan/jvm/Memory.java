package org.pan.jvm;

import java.lang.invoke.MethodHandle;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.MethodType;
import java.nio.ByteBuffer;

/**
 * Direct ByteBuffers over node memory given by address, without a Python buffer export (so
 * the node can still close its pools). Needs --add-opens java.base/java.nio=ALL-UNNAMED,
 * which the runtime passes when it starts the JVM; available() says whether it works.
 */
public final class Memory {
    private static final MethodHandle NEW;

    static {
        MethodHandle h = null;
        try {
            Class<?> dbb = Class.forName("java.nio.DirectByteBuffer");
            MethodHandles.Lookup l = MethodHandles.privateLookupIn(dbb, MethodHandles.lookup());
            h = l.findConstructor(dbb, MethodType.methodType(void.class, long.class, int.class));
        } catch (Throwable t) {
            h = null;
        }
        NEW = h;
    }

    private Memory() {}

    public static boolean available() {
        return NEW != null;
    }

    /** A direct buffer over capacity bytes at address (big-endian, like the network). */
    public static ByteBuffer wrap(long address, int capacity) throws Throwable {
        return (ByteBuffer) NEW.invoke(address, capacity);
    }
}
