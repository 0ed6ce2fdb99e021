"""``google.colab.patches`` in Skylab: ``cv2_imshow``, which Colab offers
because ``cv2.imshow`` opens a window (there is none in a notebook)."""
__all__ = ["cv2_imshow"]


def cv2_imshow(a):
    """Shows an OpenCV image (a numpy array: grayscale, BGR or BGRA; floats
    are clipped to 0..255) as a PNG in the cell's output."""
    import numpy as np
    from IPython.display import display
    from PIL import Image

    a = np.asarray(a)
    a = a.clip(0, 255).astype("uint8")
    if a.ndim == 3 and a.shape[2] == 4:
        a = a[..., [2, 1, 0, 3]]  # BGRA -> RGBA
    elif a.ndim == 3 and a.shape[2] == 3:
        a = a[..., ::-1]  # BGR -> RGB
    elif a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    display(Image.fromarray(a))
