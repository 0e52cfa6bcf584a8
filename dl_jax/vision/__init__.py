"""Computer vision beyond classification (sections 5.3.3-5.3.5): boxes and their overlap
(`boxes`), the YOLO v1 grid, loss and decoding (`yolo`), COCO-style average precision
(`average_precision`), measures of a segmentation (`segmentation`), the losses of style
transfer (`style`)."""
