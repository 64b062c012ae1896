package org.pan.jvm;

import org.pan.pni.PNI;

/** The Python side of the PNI (a JPype proxy over the node's PniServer), plus batch selection. */
public interface Upcalls extends PNI {
    /** Make capsule number index of the running batch the host's current environment. */
    void select(int index);
}
