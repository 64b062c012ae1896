package org.pan.jvm;

import java.util.HashMap;
import java.util.Map;

/**
 * One code object's class loader: defines its checked classes from bytes on first use,
 * then asks its dependencies' loaders, then the gate. Dropping the loader (and the
 * code's instance) lets the JVM unload every class it defined.
 */
public final class CodeLoader extends ClassLoader {
    /** The start of every code loader's name (the watchdog tells code's own frames by it). */
    static final String NAME_PREFIX = "pan-code-";

    private final Map<String, byte[]> pending = new HashMap<>();
    private final CodeLoader[] deps;
    private final Gate gate;

    public CodeLoader(Gate gate, String label, String[] names, byte[][] classes, CodeLoader[] deps) {
        super(NAME_PREFIX + label, null);
        this.gate = gate;
        this.deps = deps;
        for (int i = 0; i < names.length; i++) pending.put(names[i], classes[i]);
    }

    /** The class called name if this code object defines it, else null. */
    Class<?> own(String name) {
        synchronized (getClassLoadingLock(name)) {
            Class<?> c = findLoadedClass(name);
            if (c != null) return c;
            byte[] b = pending.remove(name);
            if (b == null) return null;
            return defineClass(name, b, 0, b.length);
        }
    }

    @Override
    protected Class<?> loadClass(String name, boolean resolve) throws ClassNotFoundException {
        Class<?> c = own(name);
        if (c == null) {
            for (CodeLoader d : deps) {
                c = d.own(name);
                if (c != null) break;
            }
        }
        if (c == null) c = gate.loadClass(name);
        if (resolve) resolveClass(c);
        return c;
    }

    @Override
    protected Class<?> findClass(String name) throws ClassNotFoundException {
        throw new ClassNotFoundException(name);
    }
}
