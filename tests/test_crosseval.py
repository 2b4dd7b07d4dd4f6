"""`fdx crosseval` tables: pairs, the train × test matrix, mean ± std over seeds, "selected on test" marks."""

from fdx import crosseval


def result(auc: float, acc: float = 0.5, selected_on_test: bool = False) -> dict:
    frame = {'acc': acc, 'auc': auc, 'eer': 0.1, 'ci': {'auc': [auc - 0.05, auc + 0.05], 'acc': [acc - 0.1, acc]}}
    return {'frame': frame, 'video': {'auc': auc}, 'checkpoint': {'selected_on_test': selected_on_test}}


def test_pairs_matrix_and_seed_summary():
    evaluated = [
        {'train': f'seed{s}', 'group': 'xception', 'value': v, 'result': result(auc), 'selected_on_test': False}
        for s, aucs in enumerate(((0.9, 0.6), (0.8, 0.7)))
        for v, auc in zip(('ffpp', 'celebdf'), aucs)
    ]
    text = crosseval.tables(evaluated, ['ffpp', 'celebdf'], {'ffpp': 'FF++', 'celebdf': 'Celeb-DF'})
    pairs, matrix, seeds = text.split('\n\n')[0], text.split('\n\n')[2], text.split('\n\n')[4]
    assert pairs.splitlines()[2] == '| seed0→FF++ | 50.00 [40.00, 50.00] | 90.00 [85.00, 95.00] | 10.00 | 90.00 |'
    assert matrix.splitlines()[2:] == ['| seed0 | 90.00 | 60.00 |', '| seed1 | 80.00 | 70.00 |']
    assert seeds.splitlines()[2:] == ['| seed0→FF++ | 2 | 85.00 ± 7.07 |', '| seed0→Celeb-DF | 2 | 65.00 ± 7.07 |']
    assert 'selected on test' not in text


def test_selected_on_test_is_marked():
    evaluated = [{'train': 'a', 'group': 'a', 'value': 'x', 'result': result(0.7), 'selected_on_test': True}]
    text = crosseval.tables(evaluated, ['x'], {'x': 'x'})
    assert '| a→x (selected on test) |' in text and text.endswith('their test figures are optimistic.')
