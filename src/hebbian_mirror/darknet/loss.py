"""Our YOLO loss: Darknet's anchor assignment, CIoU box loss, objectness and class BCE (an assigned anchor's
objectness target 1, or its box's IoU with the label); optionally distilled from the base model an extended head
started from (Learning without Forgetting)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.ops import box_iou, complete_box_iou_loss

from .. import runtime
from ..errors import ModelFormatError
from .heads import wh_iou
from .model import DarknetNet


@dataclass(frozen=True)
class LossWeights:
    box: float = 0.05
    obj: float = 1.0
    cls: float = 0.5


@dataclass(frozen=True)
class Teacher:
    """The base model's raw outputs on the same batch, for an extended head whose first ``keep`` class rows
    are the base model's. Anchors no label claims learn its objectness as their target, and, weighted by that
    objectness and ``weight``, its class scores (kept rows) and its box; anchors whose teacher box overlaps a
    label by more than ``overlap`` follow the labels alone (a pistol the base model called a hair drier)."""

    outputs: list[torch.Tensor]
    keep: int
    weight: float = 1.0
    overlap: float = 0.5


class YoloLoss:
    """Assignment as in Darknet: each ground-truth box goes to its cell in every head whose anchor is the
    best-fitting one of all the model's anchors, and to any anchor fitting it with IoU above ``iou_thresh``
    (AlexeyAB's extension); predictions overlapping a ground truth by more than ``ignore_thresh`` are not
    punished for their objectness. An assigned anchor's objectness target is 1 (Darknet's), or with
    ``iou_objectness`` its predicted box's IoU with the label (YOLOv5's): its score then says how well it fits.
    With ``neighbours`` a label is also assigned, on the same anchors, to the horizontal and the vertical
    neighbour cell nearest its centre (YOLOv5's): three positives where Darknet has one; this needs heads whose
    ``scale_x_y`` is 2, so that a cell's predicted centre can reach half a cell beyond it."""

    def __init__(
        self,
        net: DarknetNet,
        weights: LossWeights = LossWeights(),
        ignore_thresh: float = 0.7,
        iou_thresh: float = 0.213,
        iou_objectness: bool = False,
        neighbours: bool = False,
    ) -> None:
        if neighbours and any(head.scale_x_y < 2 for head in net.heads):
            raise ModelFormatError("neighbour cells need heads with scale_x_y 2: their centres must reach the label's")
        self.net, self.weights, self.iou_objectness = net, weights, iou_objectness
        self.neighbours = neighbours
        self.ignore_thresh, self.iou_thresh = ignore_thresh, iou_thresh
        anchors = [a for head in net.heads for a in head.anchors]
        self.anchors = torch.tensor(anchors, dtype=torch.float32)
        offsets = [0]
        for head in net.heads:
            offsets.append(offsets[-1] + len(head.anchors))
        self.offsets = offsets

    def _cells(
        self, gt: torch.Tensor, chosen: torch.Tensor, stride_x: float, stride_y: float, gw: int, gh: int
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The cells (rows, columns) the ``chosen`` labels are assigned to, with those labels' indices: each
        label's own cell, and with ``neighbours`` the horizontal and the vertical neighbour nearest its centre."""
        if not chosen.any():
            return []
        cx = (gt[chosen, 1] + gt[chosen, 3]) / 2 / stride_x
        cy = (gt[chosen, 2] + gt[chosen, 4]) / 2 / stride_y
        gi, gj = cx.long().clamp(0, gw - 1), cy.long().clamp(0, gh - 1)
        which = chosen.nonzero().squeeze(1)
        cells = [(gj, gi, which)]
        if self.neighbours:
            left, up = (cx - gi) < 0.5, (cy - gj) < 0.5
            for di, dj, ok in (
                (-1, 0, left & (gi > 0)),
                (1, 0, ~left & (gi < gw - 1)),
                (0, -1, up & (gj > 0)),
                (0, 1, ~up & (gj < gh - 1)),
            ):
                if ok.any():
                    cells.append((gj[ok] + dj, gi[ok] + di, which[ok]))
        return cells

    def _boxes(self, p: torch.Tensor, h: int, size: tuple[int, int] | None = None) -> torch.Tensor:
        """``B×A×H×W×4`` boxes (x1, y1, x2, y2, pixels of an input ``size``: width, height, default the network's)
        of head ``h``'s permuted raw output."""
        _, a, gh, gw, _ = p.shape
        head, device = self.net.heads[h], p.device
        width, height = size or (self.net.width, self.net.height)
        stride_x, stride_y = width / gw, height / gh
        ys, xs = torch.meshgrid(torch.arange(gh, device=device), torch.arange(gw, device=device), indexing="ij")
        s = head.scale_x_y
        head_anchors = self.anchors.to(device)[self.offsets[h] : self.offsets[h + 1]]
        cx = (torch.sigmoid(p[..., 0]) * s - 0.5 * (s - 1) + xs) * stride_x
        cy = (torch.sigmoid(p[..., 1]) * s - 0.5 * (s - 1) + ys) * stride_y
        w = torch.exp(p[..., 2].clamp(max=8)) * head_anchors[:, 0].view(1, a, 1, 1)
        hh = torch.exp(p[..., 3].clamp(max=8)) * head_anchors[:, 1].view(1, a, 1, 1)
        return torch.stack((cx - w / 2, cy - hh / 2, cx + w / 2, cy + hh / 2), -1)

    def _distill(
        self,
        p: torch.Tensor,
        h: int,
        teacher: Teacher,
        gt_all: list[torch.Tensor],
        free: torch.Tensor,
        size: tuple[int, int],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """On the ``free`` anchors (neither assigned nor ignored), those whose teacher box overlaps no label:
        the objectness target (the teacher's), its weight mask, and the summed class + box distillation."""
        b, a, gh, gw, _ = p.shape
        t = teacher.outputs[h].view(b, a, teacher.keep + 5, gh, gw).permute(0, 1, 3, 4, 2).float()
        t_boxes = self._boxes(t, h, size)
        for i, gt in enumerate(gt_all):
            if len(gt):
                near = box_iou(t_boxes[i].reshape(-1, 4), gt[:, 1:]).max(1).values.view(a, gh, gw)
                free[i] &= near <= teacher.overlap
        t_obj = torch.sigmoid(t[..., 4])
        weight = t_obj * free
        cls = F.binary_cross_entropy_with_logits(
            p[..., 5 : 5 + teacher.keep], torch.sigmoid(t[..., 5:]), reduction="none"
        ).mean(-1)
        box = (torch.sigmoid(p[..., :2]) - torch.sigmoid(t[..., :2])).square().sum(-1)
        box = box + (p[..., 2:4] - t[..., 2:4]).square().sum(-1)
        return t_obj, free, (weight * (cls + box)).sum()

    def __call__(
        self,
        outputs: list[torch.Tensor],
        targets: list[torch.Tensor],
        teacher: Teacher | None = None,
        size: tuple[int, int] | None = None,
    ) -> tuple[torch.Tensor, dict]:
        """``outputs``: raw head outputs; ``targets``: per image an ``N×5`` tensor (class, x1, y1, x2, y2) in
        network-input pixels; ``teacher``: the base model's outputs to distil from; ``size``: the input's width and
        height (default: the network's; multi-scale training changes it). Returns the total (scaled by batch
        size) and its parts."""
        size = size or (self.net.width, self.net.height)
        device = outputs[0].device
        anchors = self.anchors.to(device)
        batch = outputs[0].shape[0]
        gt_all = [t.to(device) for t in targets]
        lbox = torch.zeros((), device=device)
        lcls = torch.zeros((), device=device)
        obj_sums, obj_counts = [], []  # per head: the weighted objectness loss and its weight
        distilled, distill_weight = torch.zeros((), device=device), torch.zeros((), device=device)
        n_pos = 0
        for h, (raw, head) in enumerate(zip(outputs, self.net.heads, strict=True)):
            b, _, gh, gw = raw.shape
            a = len(head.anchors)
            p = raw.view(b, a, head.classes + 5, gh, gw).permute(0, 1, 3, 4, 2).float()
            stride_x, stride_y = size[0] / gw, size[1] / gh
            pred = self._boxes(p, h, size)  # B×A×H×W×4
            obj_target = torch.zeros(p.shape[:4], device=device)
            obj_weight = torch.ones(p.shape[:4], device=device)
            assigned = torch.zeros(p.shape[:4], dtype=torch.bool, device=device)
            pos_pred, pos_gt, pos_logits, pos_cls = [], [], [], []
            for i, gt in enumerate(gt_all):
                if not len(gt):
                    continue
                with torch.no_grad():  # ignore: good predictions that are not assigned
                    best = box_iou(pred[i].reshape(-1, 4), gt[:, 1:]).max(1).values.view(a, gh, gw)
                    obj_weight[i][best > self.ignore_thresh] = 0.0
                gt_wh = gt[:, 3:5] - gt[:, 1:3]
                ious = wh_iou(gt_wh, anchors)  # N×all anchors
                best_anchor = ious.argmax(1)
                for k in range(a):
                    g = self.offsets[h] + k
                    chosen = (best_anchor == g) | (ious[:, g] > self.iou_thresh)
                    for jj, ii, which in self._cells(gt, chosen, stride_x, stride_y, gw, gh):
                        if self.iou_objectness:  # how well the box fits its label; two labels on one anchor: the better
                            fit = box_iou(pred[i, k, jj, ii].detach(), gt[which, 1:]).diagonal()  # a few labels
                            obj_target[i, k].view(-1).scatter_reduce_(0, jj * gw + ii, fit, "amax")
                        else:
                            obj_target[i, k, jj, ii] = 1.0
                        obj_weight[i, k, jj, ii] = 1.0
                        assigned[i, k, jj, ii] = True
                        pos_pred.append(pred[i, k, jj, ii])
                        pos_gt.append(gt[which, 1:])
                        pos_logits.append(p[i, k, jj, ii, 5:])
                        pos_cls.append(gt[which, 0].long())
            if teacher is not None:
                free = ~assigned & (obj_weight > 0)
                t_obj, free, d_sum = self._distill(p, h, teacher, gt_all, free, size)
                obj_target = torch.where(free, t_obj, obj_target)
                distilled = distilled + d_sum
                distill_weight = distill_weight + (t_obj * free).sum().detach()
            bce = F.binary_cross_entropy_with_logits(p[..., 4], obj_target, reduction="none")
            obj_sums.append((bce * obj_weight).sum())
            obj_counts.append(obj_weight.sum().detach())
            if pos_pred:
                pp, pg = torch.cat(pos_pred), torch.cat(pos_gt)
                lbox = lbox + complete_box_iou_loss(pp, pg, reduction="sum")
                logits = torch.cat(pos_logits)
                onehot = F.one_hot(torch.cat(pos_cls), head.classes).float()
                lcls = lcls + F.binary_cross_entropy_with_logits(logits, onehot, reduction="sum") / head.classes
                n_pos += len(pp)
        # normalised over the global batch: with N processes (DDP averages their gradients) each process's
        # share times N sums to the loss one process would compute on the whole batch
        sums = torch.tensor([batch, n_pos, float(distill_weight), *obj_counts], dtype=torch.float64, device=device)
        counts = runtime.all_sum(sums)
        n = float(counts[1].clamp(min=1))
        lobj = torch.zeros((), device=device)
        for head_sum, head_count in zip(obj_sums, counts[3:], strict=True):
            lobj = lobj + head_sum / float(head_count.clamp(min=1))
        wts = self.weights
        total = wts.box * lbox / n + wts.obj * lobj + wts.cls * lcls / n
        parts = {"box": float(lbox.detach()) / n, "obj": float(lobj.detach()), "cls": float(lcls.detach()) / n}
        if teacher is not None:  # per unit of the teacher's objectness on the anchors it teaches
            ldistill = distilled / float(counts[2].clamp(min=1e-6))
            total = total + teacher.weight * wts.cls * ldistill
            parts["distill"] = float(ldistill.detach())
        return total * float(counts[0]) * runtime.world_size(), parts | {"positives": n_pos}
