# hostile: body[0] picks what accept does. 0: DONE; 9: allocate 2 GB, 100 kB at a time
# ruff: noqa: F821


def accept(pni, capsule, length):
    if length > 0 and pni.seg_get_u8(capsule, 0) == 9:
        hog = []
        chunk = "x" * 100000
        while len(hog) < 21475:
            hog.append(chunk + str(len(hog)))
        return len(hog)
    return DONE
