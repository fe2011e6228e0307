"""Where models come from: the zoo as data (``registry``), the weights cache (``cache``), checkpoints
(``checkpoint``) and the one loader every entry point uses (``loader``)."""
