"""Quality of decoded frames against the truth: pixels, structure, landmarks, sharpness.

Every metric compares a decoded clip with the true clip frame by frame, both
``[T, H, W, 3]`` uint8 RGB of the same size (512x512 in the bench). Landmark
metrics use MediaPipe's face mesh on both clips; the truth's landmarks are
computed once per clip (:class:`Reference`) and reused for every codec setting.

Choices worth knowing when reading the numbers:

- PSNR of a clip comes from the clip's mean squared error, so one identical
  frame does not make the clip's PSNR infinite.
- SSIM is Wang et al.'s, on BT.601 luma, with an 11x11 Gaussian window
  (sigma 1.5) and the usual constants K1=0.01, K2=0.03.
- NME is the mean 2D landmark distance over the truth's inter-ocular distance
  (outer eye corners). A decoded frame where no face is found scores
  :data:`NME_MISS` (half an inter-ocular distance, far above any frame where a
  face is found) instead of being dropped: a codec must not gain by destroying
  the face. ``face_detected`` reports how often that happened. Frames where
  the truth itself has no face are left out of every landmark metric.
- Detail kept is the variance of the Laplacian of luma inside the truth's
  face oval, decoded over truth (1 = as much fine detail as the truth; a
  blurred face is below 1, ringing or noise can push it above).
- CPBD is Narvekar and Karam's no-reference sharpness (2011), computed on the
  decoded frames alone; higher is sharper.
"""
