"""lm/glm fits against R: the school tutorial's lm/glm numbers in
tests/reference/lme4_refs.json (glm_cases), further R 4.2.2 fits of the
binomial, bernoulli, poisson, Gamma and weighted gaussian families (numbers
below, produced by the R script in R_SCRIPT), and independent
Newton-Raphson maximum likelihood for the binomial and poisson fits."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayesmix
from bayesmix import datasets
from bayesmix.design import build_design
from bayesmix.errors import BayesmixError, FamilyError
from bayesmix.families import get_family
from bayesmix.glmfit import fit_glm
from bayesmix.results.format import Display
from bayesmix.results.glm import GlmFit

REF = json.loads((Path(__file__).parent / "reference" / "lme4_refs.json").read_text())["glm_cases"]
LMM_KEYS = [k for k, v in REF.items() if isinstance(v, dict) and "coef" in v]

R_SCRIPT = r'''
cbpp <- read.csv("bayesmix/datasets/cbpp.csv")
cbpp$period <- factor(cbpp$period, levels = c("1", "2", "3", "4"))
cbpp$any <- as.integer(cbpp$incidence > 0)
cbpp$w <- (seq_len(nrow(cbpp)) %% 3) + 0.5
lmmdata <- read.csv("bayesmix/datasets/lmmdata.csv")
lmmdata$school <- factor(lmmdata$school, levels = c("I", "II", "III", "IV", "V", "VI"))
binomial:           glm(cbind(incidence, size - incidence) ~ period, binomial, cbpp)
binomial_probit:    glm(cbind(incidence, size - incidence) ~ period, binomial(link = "probit"), cbpp)
bernoulli:          glm(any ~ period + size, binomial, cbpp)
bernoulli_weighted: glm(any ~ period + size, binomial, cbpp, weights = w)
poisson_offset:     glm(incidence ~ period + offset(log(size)), poisson, cbpp)
poisson_noint:      glm(incidence ~ 0 + period, poisson, cbpp)
gamma_log:          glm(extro ~ open + agree + school, Gamma(link = "log"), lmmdata)
gamma_inverse:      glm(size ~ period, Gamma, cbpp)
lm_weighted:        lm(incidence ~ period + size, cbpp, weights = w)
glm_gauss_weighted: glm(incidence ~ period + size, data = cbpp, weights = w)
lm_noint:           lm(incidence ~ 0 + size, cbpp)
each: coef, coef(summary()), logLik, AIC, BIC, deviance, df.residual, nobs, first five
fitted / deviance (lm: response) / pearson residuals, null deviance, dispersion, iter,
confint (lm) or confint.default (glm), summary() printout
'''

# formula, data set, family, link, weights column, fitter
R_CASES = {
    "binomial": ("cbind(incidence, size - incidence) ~ period", "cbpp", "binomial", None, None, "glm"),
    "binomial_probit": ("cbind(incidence, size - incidence) ~ period", "cbpp", "binomial", "probit",
                        None, "glm"),
    "bernoulli": ("any ~ period + size", "cbpp", "bernoulli", None, None, "glm"),
    "bernoulli_weighted": ("any ~ period + size", "cbpp", "binomial", None, "w", "glm"),
    "poisson_offset": ("incidence ~ period + offset(log(size))", "cbpp", "poisson", None, None, "glm"),
    "poisson_noint": ("incidence ~ 0 + period", "cbpp", "poisson", None, None, "glm"),
    "gamma_log": ("extro ~ open + agree + school", "lmmdata", "Gamma", "log", None, "glm"),
    "gamma_inverse": ("size ~ period", "cbpp", "Gamma", None, None, "glm"),
    "lm_weighted": ("incidence ~ period + size", "cbpp", "gaussian", None, "w", "lm"),
    "glm_gauss_weighted": ("incidence ~ period + size", "cbpp", "gaussian", None, "w", "glm"),
    "lm_noint": ("incidence ~ 0 + size", "cbpp", "gaussian", None, None, "lm"),
}

R_GLM = {'binomial': {'coef': {'(Intercept)': -1.26902348936715,
                       'period2': -1.17076272514038,
                       'period3': -1.30140533385642,
                       'period4': -1.78227863534165},
              'se': [0.144919762428695, 0.291467787718858, 0.312881171641315, 0.413056442968482],
              'stat': [-8.75673178108849, -4.0167825552979, -4.15942361449714, -4.3148549446005],
              'p': [2.00993178726359e-18, 5.89981152281388e-05, 3.19051695313122e-05, 1.59707735940576e-05],
              'logLik': -99.0291994893634,
              'AIC': 206.058398978727,
              'BIC': 214.159805741667,
              'deviance': 114.101691440856,
              'df_residual': 52,
              'nobs': 56,
              'fitted_first5': [0.219424460431655, 0.0801886792452831, 0.0710659898478871, 0.0451612903225808,
                                0.219424460431655],
              'resid_first5': [-0.727394205089724, 1.77447316203772, 3.08626612157446, -0.679800287990023,
                               -0.994219983393111],
              'pearson_first5': [-0.692241229090202, 2.16596461534627, 4.35960530130284, -0.486298762579638,
                                 -0.941364003489184],
              'null_deviance': 154.817464300649,
              'dispersion': 1,
              'iter': 5,
              'confint': [[-1.55306100437549, -0.984985974358805], [-1.74202909172291, -0.599496358557854],
                          [-1.91464116171409, -0.688169505998746], [-2.5918543871421, -0.972702883541201]]},
 'binomial_probit': {'coef': {'(Intercept)': -0.774138451538547,
                              'period2': -0.629665092013555,
                              'period3': -0.693759371053834,
                              'period4': -0.919560095621316},
                     'se': [0.0839559752851447, 0.150778883932662, 0.158774972086234, 0.194512024389745],
                     'stat': [-9.22076658521677, -4.17608272186685, -4.36945043628814, -4.72752313645551],
                     'p': [2.94983674796014e-20, 2.96572007721596e-05, 1.24559605883887e-05,
                           2.27275173783767e-06],
                     'logLik': -99.0291994893634,
                     'AIC': 206.058398978727,
                     'BIC': 214.159805741667,
                     'deviance': 114.101691440856,
                     'df_residual': 52,
                     'nobs': 56,
                     'fitted_first5': [0.219424460431835, 0.0801886792463228, 0.0710659898726177,
                                       0.0451612903462366, 0.219424460431835],
                     'resid_first5': [-0.727394205091279, 1.77447316202154, 3.08626612116656,
                                      -0.679800288172243, -0.994219983395051],
                     'pearson_first5': [-0.692241229091629, 2.16596461532019, 4.35960530031355,
                                        -0.486298762713025, -0.941364003490951],
                     'null_deviance': 154.817464300649,
                     'dispersion': 1,
                     'iter': 4,
                     'confint': [[-0.938689139384366, -0.609587763692729],
                                 [-0.925186274150716, -0.334143909876393],
                                 [-1.00495259798921, -0.382566144118463],
                                 [-1.30079665798519, -0.53832353325744]]},
 'bernoulli': {'coef': {'(Intercept)': 1.37889069081237,
                        'period2': -1.85020353183903,
                        'period3': -2.70323385766588,
                        'period4': -2.75009559144352,
                        'size': 0.072525886362542},
               'se': [1.27515771393772, 1.19338966547429, 1.18181377849425, 1.20802913492039,
                      0.0451897959418388],
               'stat': [1.08134913488804, -1.55037670039124, -2.28736024816877, -2.27651429253381,
                        1.6049173237225],
               'p': [0.279541838628249, 0.121051127522061, 0.0221748045449101, 0.0228152461540747,
                     0.108512000552014],
               'logLik': -29.6609207487262,
               'AIC': 69.3218414974523,
               'BIC': 79.4485999511281,
               'deviance': 59.3218414974523,
               'df_residual': 51,
               'nobs': 56,
               'fitted_first5': [0.916388022570435, 0.598446845871939, 0.338136386224275, 0.26725872633098,
                                 0.951406895370565],
               'resid_first5': [0.417888498471103, 1.01332874248409, 1.47262076268666, -0.788622353826436,
                                0.315637283621864],
               'pearson_first5': [0.302060923066553, 0.819141123782881, 1.39906631292923, -0.603935584804522,
                                  0.225997781666237],
               'null_deviance': 75.0410057406718,
               'dispersion': 1,
               'iter': 5,
               'confint': [[-1.12037250311399, 3.87815388473873], [-4.18920429569094, 0.488797232012874],
                           [-5.01954629994781, -0.386921415383949], [-5.11778918816256, -0.382401994724481],
                           [-0.0160444861521764, 0.16109625887726]]},
 'bernoulli_weighted': {'coef': {'(Intercept)': 1.56567947612355,
                                 'period2': -2.19373071928454,
                                 'period3': -2.81103620068774,
                                 'period4': -2.73614243600801,
                                 'size': 0.0680009930783133},
                        'se': [1.03000175000124, 0.977856946304153, 0.960385472069632, 0.973988028845149,
                               0.0365012511853465],
                        'stat': [1.52007457863219, -2.24340659191084, -2.92698742581971, -2.8092156730635,
                                 1.86297704517078],
                        'p': [0.12849223290679, 0.0248706071998083, 0.00342262718181983, 0.00496623646788148,
                              0.0624654958797302],
                        'logLik': -41.4251439284549,
                        'AIC': 92.8502878569098,
                        'BIC': 102.977046310586,
                        'deviance': 89.6340862892729,
                        'df_residual': 51,
                        'nobs': 56,
                        'fitted_first5': [0.925372920705616, 0.546852311648241, 0.346751825334059,
                                          0.303548238358719, 0.955285026242971],
                        'resid_first5': [0.482364380514203, 1.73720538509795, 1.02914816993461,
                                         -1.04176304368065, 0.478254776410307],
                        'pearson_first5': [0.347804709767699, 1.43931172280254, 0.970542877174002,
                                           -0.808563192220074, 0.342081831897802],
                        'null_deviance': 113.551867814098,
                        'dispersion': 1,
                        'iter': 5,
                        'confint': [[-0.453086857892108, 3.58444581013922],
                                    [-4.110295116073, -0.277166322496082],
                                    [-4.69335713721972, -0.928715264155767],
                                    [-4.64512389391767, -0.827160978098363],
                                    [-0.00354014463561578, 0.139542130792242]]},
 'poisson_offset': {'coef': {'(Intercept)': -1.51674724951733,
                             'period2': -1.00662568109847,
                             'period3': -1.12739914960534,
                             'period4': -1.58076771834661},
                    'se': [0.128036879932889, 0.27425712759129, 0.296347749789139, 0.399062132353803],
                    'stat': [-11.8461747139757, -3.67037199703553, -3.80431149015817, -3.96120701561611],
                    'p': [2.25239855560456e-32, 0.000242197733505522, 0.000142199153342427,
                          7.45718439978615e-05],
                    'logLik': -94.6127049606729,
                    'AIC': 197.225409921346,
                    'BIC': 205.326816684286,
                    'deviance': 98.052000281183,
                    'df_residual': 52,
                    'nobs': 56,
                    'fitted_first5': [3.07194244604316, 0.962264150943395, 0.639593908629482,
                                      0.225806451612903, 4.8273381294964],
                    'resid_first5': [-0.653630854484684, 1.65740752950571, 2.81867296444793,
                                     -0.672021505032247, -0.894750673626748],
                    'pearson_first5': [-0.611596414623565, 2.07730722990462, 4.2018408970951,
                                       -0.475190963311491, -0.831696849588614],
                    'null_deviance': 133.663559966933,
                    'dispersion': 1,
                    'iter': 6,
                    'confint': [[-1.76769492287867, -1.26579957615599],
                                [-1.54415977368081, -0.469091588516137],
                                [-1.70823006609154, -0.54656823311914],
                                [-2.36291512535382, -0.798620311339397]]},
 'poisson_noint': {'coef': {'period1': 1.40282366307253,
                            'period2': 0.194156014579067,
                            'period3': 2.62684463944022e-08,
                            'period4': -0.619039203263234},
                   'se': [0.128036771581197, 0.242533609588632, 0.267230613119384, 0.377945306627869],
                   'stat': [10.9564123317723, 0.800532408305718, 9.82987917730327e-08, -1.637906841036],
                   'p': [6.19050814879609e-28, 0.423402394486913, 0.999999921568912, 0.101441128679718],
                   'logLik': -101.109266200128,
                   'AIC': 210.218532400256,
                   'BIC': 218.319939163197,
                   'deviance': 111.045122760094,
                   'df_residual': 52,
                   'nobs': 56,
                   'fitted_first5': [4.06666666667249, 1.21428571445342, 1.00000002626845, 0.53846154123084,
                                     4.06666666667249],
                   'resid_first5': [-1.13781694630315, 1.36209730689151, 2.25618144911894, -1.03774904599411,
                                    -0.555036113166017],
                   'pearson_first5': [-1.02482838760845, 1.62050930861632, 2.99999993432888,
                                      -0.733799387592304, -0.528943683928339],
                   'null_deviance': 194.124365228073,
                   'dispersion': 1,
                   'iter': 5,
                   'confint': [[1.15187620207661, 1.65377112406846], [-0.281201125255151, 0.669513154413285],
                               [-0.523762351012104, 0.523762403548997],
                               [-1.3597983923798, 0.121719985853335]]},
 'gamma_log': {'coef': {'(Intercept)': 3.68958198261592,
                        'open': 9.08128853924703e-05,
                        'agree': -9.1621842110081e-05,
                        'schoolII': 0.270156663944331,
                        'schoolIII': 0.352600268032829,
                        'schoolIV': 0.467469416529371,
                        'schoolV': 0.514319784907837,
                        'schoolVI': 0.532443853544178},
               'se': [0.0137981926794058, 0.000247025476931172, 0.000248885653775133, 0.00494065572601475,
                      0.0049498608862879, 0.00494743300852398, 0.00494113266821024, 0.00494362779905106],
               'stat': [267.396032824119, 0.367625584699401, -0.36812825777761, 54.6803256340724,
                        71.2343793357106, 94.4872655625581, 104.089450626739, 107.703062444625],
               'p': [0, 0.713217697548277, 0.712842962482948, 0, 0, 0, 0, 0],
               'logLik': -2942.22820953045,
               'AIC': 5902.45641906091,
               'BIC': 5948.26711058289,
               'deviance': 2.90266442885068,
               'df_residual': 1192,
               'nobs': 1200,
               'fitted_first5': [40.0599042665708, 40.0496115730621, 40.0126454864659, 40.04538800631,
                                 40.0437689050891],
               'resid_first5': [0.0779397353922113, 0.0631796865193597, 0.077232844272458, 0.12469219099995,
                                0.121497802734626],
               'pearson_first5': [0.0799776183215402, 0.0645171906904539, 0.0792338140852609,
                                  0.129927870666909, 0.126467393888772],
               'null_deviance': 41.1040345425141,
               'dispersion': 0.00243989529158987,
               'iter': 3,
               'confint': [[3.66253802191254, 3.7166259433193], [-0.000393348152656456, 0.000574973923441396],
                           [-0.000579428759778046, 0.000396185075557884],
                           [0.260473156661331, 0.279840171227332], [0.342898718967221, 0.362301817098437],
                           [0.457772626016739, 0.477166207042003], [0.504635342835311, 0.524004226980364],
                           [0.522754521105067, 0.54213318598329]]},
 'gamma_inverse': {'coef': {'(Intercept)': 0.0539568345323741,
                            'period2': 0.0120809013165147,
                            'period3': 0.0171091553153044,
                            'period4': 0.0299141325076874},
                   'se': [0.00716881206396904, 0.0115702929320022, 0.0121206604300278, 0.0139513943315341],
                   'stat': [7.52660748404397, 1.04413098160205, 1.41156956042743, 2.14416794456688],
                   'p': [7.16960627085797e-10, 0.301254599447392, 0.164032617879495, 0.0367146157600352],
                   'logLik': -191.152951152537,
                   'AIC': 392.305902305075,
                   'BIC': 402.43266075875,
                   'deviance': 17.9121201416313,
                   'df_residual': 52,
                   'nobs': 56,
                   'fitted_first5': [18.5333333333333, 15.1428571428956, 14.0714285714359, 11.9230770228552,
                                     18.5333333333333],
                   'resid_first5': [-0.267989799904421, -0.223942516990232, -0.415970504762395,
                                    -0.759463877472016, 0.176515262469517],
                   'pearson_first5': [-0.244604316546763, -0.207547169813335, -0.360406091370893,
                                      -0.580645164799693, 0.18705035971223],
                   'null_deviance': 19.3256856138564,
                   'dispersion': 0.2647846067907,
                   'iter': 5,
                   'confint': [[0.0399062210750585, 0.0680074479896896],
                               [-0.010596456120788, 0.0347582587538174],
                               [-0.00664690259638974, 0.0408652132269986],
                               [0.0025699020837644, 0.0572583629316104]]},
 'lm_weighted': {'coef': {'(Intercept)': 2.13062482968811,
                          'period2': -2.28788448687437,
                          'period3': -2.66856664435175,
                          'period4': -2.79490978965051,
                          'size': 0.103578728574142},
                 'se': [0.922188058504405, 0.816714772655446, 0.809123078137616, 0.83723137857337,
                        0.0411186747264375],
                 'stat': [2.31040166920349, -2.80132619547899, -3.29809730615282, -3.33827644445553,
                          2.51901913822007],
                 'p': [0.0249468359124557, 0.00717394034957817, 0.0017784562989352, 0.00158040598792065,
                       0.0149453657043168],
                 'logLik': -125.195265455725,
                 'AIC': 262.390530911449,
                 'BIC': 274.54264105586,
                 'deviance': 359.383359008192,
                 'df_residual': 51,
                 'nobs': 56,
                 'fitted_first5': [3.58072702972609, 1.08568508570343, 0.394266742503632, -0.146391317091701,
                                   4.40935685831923],
                 'resid_first5': [-1.58072702972609, 1.91431491429657, 3.60573325749637, 0.146391317091701,
                                  -1.40935685831923],
                 'pearson_first5': [-1.93598732272709, 3.02679764400359, 2.54963843752554, 0.179292014824321,
                                    -2.22838885413399],
                 'sigma': 2.65456823788209,
                 'r_squared': 0.374617590588912,
                 'adj_r_squared': 0.325567989850787,
                 'F': 7.63752578923103,
                 'confint': [[0.279255050255592, 3.98199460912062], [-3.92750780943464, -0.648261164314112],
                             [-4.29294900420882, -1.04418428449468], [-4.47572191727357, -1.11409766202746],
                             [0.02102954453645, 0.186127912611834]]},
 'glm_gauss_weighted': {'coef': {'(Intercept)': 2.13062482968811,
                                 'period2': -2.28788448687437,
                                 'period3': -2.66856664435175,
                                 'period4': -2.79490978965051,
                                 'size': 0.103578728574142},
                        'se': [0.922188058504405, 0.816714772655446, 0.809123078137616, 0.83723137857337,
                               0.0411186747264375],
                        'stat': [2.31040166920349, -2.80132619547899, -3.29809730615282, -3.33827644445553,
                                 2.51901913822007],
                        'p': [0.0249468359124557, 0.00717394034957817, 0.0017784562989352,
                              0.00158040598792065, 0.0149453657043168],
                        'logLik': -125.195265455725,
                        'AIC': 262.39053091145,
                        'BIC': 274.54264105586,
                        'deviance': 359.383359008193,
                        'df_residual': 51,
                        'nobs': 56,
                        'fitted_first5': [3.58072702972609, 1.08568508570343, 0.394266742503635,
                                          -0.146391317091699, 4.40935685831923],
                        'resid_first5': [-1.93598732272709, 3.02679764400359, 2.54963843752554,
                                         0.179292014824319, -2.22838885413399],
                        'pearson_first5': [-1.93598732272709, 3.02679764400359, 2.54963843752554,
                                           0.179292014824319, -2.22838885413399],
                        'null_deviance': 574.661764705882,
                        'dispersion': 7.0467325295724,
                        'iter': 2,
                        'confint': [[0.323169448046556, 3.93808021132966],
                                    [-3.88861602692087, -0.687152946827881],
                                    [-4.25441873656166, -1.08271455214183],
                                    [-4.43585313838114, -1.15396644091989],
                                    [0.022987607018307, 0.184169850129976]]},
 'lm_noint': {'coef': {'size': 0.121614748887476},
              'se': [0.0192427583500947],
              'stat': [6.32002682125235],
              'p': [4.87113732281679e-08],
              'logLik': -128.294392791523,
              'AIC': 260.588785583045,
              'BIC': 264.639488964516,
              'deviance': 320.350985378258,
              'df_residual': 55,
              'nobs': 56,
              'fitted_first5': [1.70260648442467, 1.45937698664971, 1.09453273998729, 0.608073744437381,
                                2.67552447552448],
              'resid_first5': [0.297393515575328, 1.54062301335029, 2.90546726001271, -0.608073744437381,
                               0.324475524475525],
              'pearson_first5': [0.297393515575328, 1.54062301335029, 2.90546726001271, -0.608073744437381,
                                 0.324475524475525],
              'sigma': 2.41341322000891,
              'r_squared': 0.420703462245465,
              'adj_r_squared': 0.410170797922655,
              'F': 39.9427390213492,
              'confint': [[0.0830513993998752, 0.160178098375077]]}}

R_SUMMARY_BINOMIAL_AFTER_CALL = ('\n'
 'Deviance Residuals: \n'
 '    Min       1Q   Median       3Q      Max  \n'
 '-3.5194  -1.1089  -0.4411   0.5896   3.3865  \n'
 '\n'
 'Coefficients:\n'
 '            Estimate Std. Error z value Pr(>|z|)    \n'
 '(Intercept)  -1.2690     0.1449  -8.757  < 2e-16 ***\n'
 'period2      -1.1708     0.2915  -4.017 5.90e-05 ***\n'
 'period3      -1.3014     0.3129  -4.159 3.19e-05 ***\n'
 'period4      -1.7823     0.4131  -4.315 1.60e-05 ***\n'
 '---\n'
 'Signif. codes:  0 ‘***’ 0.001 ‘**’ 0.01 ‘*’ 0.05 ‘.’ 0.1 ‘ ’ 1\n'
 '\n'
 '(Dispersion parameter for binomial family taken to be 1)\n'
 '\n'
 '    Null deviance: 154.82  on 55  degrees of freedom\n'
 'Residual deviance: 114.10  on 52  degrees of freedom\n'
 'AIC: 206.06\n'
 '\n'
 'Number of Fisher Scoring iterations: 5\n')

R_SUMMARY_LM_WEIGHTED_AFTER_CALL = ('\n'
 'Weighted Residuals:\n'
 '    Min      1Q  Median      3Q     Max \n'
 '-5.7809 -1.3846 -0.3043  0.4051  8.4524 \n'
 '\n'
 'Coefficients:\n'
 '            Estimate Std. Error t value Pr(>|t|)   \n'
 '(Intercept)  2.13062    0.92219   2.310  0.02495 * \n'
 'period2     -2.28788    0.81671  -2.801  0.00717 **\n'
 'period3     -2.66857    0.80912  -3.298  0.00178 **\n'
 'period4     -2.79491    0.83723  -3.338  0.00158 **\n'
 'size         0.10358    0.04112   2.519  0.01495 * \n'
 '---\n'
 'Signif. codes:  0 ‘***’ 0.001 ‘**’ 0.01 ‘*’ 0.05 ‘.’ 0.1 ‘ ’ 1\n'
 '\n'
 'Residual standard error: 2.655 on 51 degrees of freedom\n'
 'Multiple R-squared:  0.3746,\tAdjusted R-squared:  0.3256 \n'
 'F-statistic: 7.638 on 4 and 51 DF,  p-value: 6.685e-05\n')

R_SUMMARY_OLSEXAMP = """
Call:
lm(formula = extro ~ open + agree + social, data = lmmdata)

Residuals:
    Min      1Q  Median      3Q     Max 
-24.329  -6.317   3.044   7.943  19.157 

Coefficients:
             Estimate Std. Error t value Pr(>|t|)    
(Intercept) 60.386056   3.080009  19.606   <2e-16 ***
open         0.017126   0.050693   0.338    0.736    
agree       -0.077635   0.051010  -1.522    0.128    
social      -0.002482   0.014798  -0.168    0.867    
---
Signif. codes:  0 ‘***’ 0.001 ‘**’ 0.01 ‘*’ 0.05 ‘.’ 0.1 ‘ ’ 1

Residual standard error: 10.13 on 1196 degrees of freedom
Multiple R-squared:  0.002101,\tAdjusted R-squared:  -0.0004019 
F-statistic: 0.8394 on 3 and 1196 DF,  p-value: 0.4723
"""

R_CONFINT_OLSEXAMP = [[54.34323394, 66.42887864], [-0.08233033, 0.11658248],
                      [-0.17771530, 0.02244433], [-0.03151425, 0.02655122]]


@pytest.fixture(scope="module")
def data():
    cbpp = datasets.load("cbpp")
    cbpp["any"] = (cbpp["incidence"] > 0).astype(int)
    cbpp["w"] = (np.arange(1, len(cbpp) + 1) % 3) + 0.5
    return {"cbpp": cbpp, "lmmdata": datasets.load("lmmdata")}


def fit(formula, df, family="gaussian", link=None, weights=None, fitter=None, data_name=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rank-deficiency notes
        design = build_design(formula, df, family=get_family(family, link), weights=weights)
    return fit_glm(design, fitter=fitter, data_name=data_name)


def rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


# ---------------------------------------------------------------- the tutorial's fits


@pytest.mark.parametrize("key", LMM_KEYS)
def test_lmmdata_reference(key, data):
    ref = REF[key]
    fitter = ref.get("fitter", "glm")
    f = fit(ref["formula"], data["lmmdata"], fitter=fitter)
    assert isinstance(f, GlmFit) and f.fitter == fitter
    coef = f.coef()
    for name, value in ref["coef"].items():
        if value is None:
            assert np.isnan(coef[name]) and name in f.aliased
        else:
            assert rel(coef[name], value) < 1e-8, name
    assert sorted(f.aliased) == sorted(ref.get("aliased_coefs", []))
    table = f.coef_table()
    assert list(table.columns) == ref["coef_table"]["columns"]
    for name, row in ref["coef_table"]["rows"].items():
        est, se, t, p = row
        assert rel(table.loc[name, "Std. Error"], se) < 1e-6, name
        assert rel(table.loc[name, "t value"], t) < 1e-6, name
        assert abs(table.loc[name, "Pr(>|t|)"] - p) <= 1e-6 * max(p, 1e-300), name
    if "se" in ref:
        assert rel(f.se()[list(ref["se"])], list(ref["se"].values())) < 1e-6
    for attr, method in [("AIC", f.aic), ("BIC", f.bic), ("logLik", f.loglik),
                         ("deviance", f.deviance), ("null_deviance", f.null_deviance),
                         ("sigma", f.sigma), ("r_squared", f.r_squared),
                         ("adj_r_squared", f.adj_r_squared), ("dispersion", f.dispersion)]:
        if attr in ref:
            assert abs(method() - ref[attr]) <= 1e-6 * abs(ref[attr]) + 1e-12, attr
    if "df_residual" in ref:
        assert f.df_residual() == ref["df_residual"]
    if "logLik_df" in ref:
        assert f.df() == ref["logLik_df"]
    if "fstatistic" in ref:
        fs = f.fstatistic()
        assert rel(fs["value"], ref["fstatistic"]["value"]) < 1e-6
        assert (fs["numdf"], fs["dendf"]) == (ref["fstatistic"]["numdf"], ref["fstatistic"]["dendf"])
        assert fs["p_value"] == pytest.approx(stats.f.sf(fs["value"], fs["numdf"], fs["dendf"]))
    assert f.nobs() == 1200


def test_aliased_coefficient_printed_as_na(data):
    f = fit(REF["MLexamp.4"]["formula"], data["lmmdata"], fitter="glm")
    assert f.aliased == ("schoolVI:classd",)
    assert "schoolVI:classd" not in f.fixef().index
    assert np.isnan(f.coef()["schoolVI:classd"])
    assert len(f.coef()) == len(f.fixef()) + 1
    text = str(f.summary())
    assert "Coefficients: (1 not defined because of singularities)" in text
    assert "schoolVI:classd          NA         NA       NA       NA" in text


def test_front_door_lm(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = bayesmix.lm("extro ~ open + agree + social", data["lmmdata"])
    assert isinstance(f, GlmFit) and f.fitter == "lm"
    assert rel(f.fixef().to_numpy(), [REF["OLSexamp"]["coef"][n] for n in f.fixef().index]) < 1e-8


def test_lm_summary_prints_like_r(data):
    f = fit("extro ~ open + agree + social", data["lmmdata"], fitter="lm", data_name="lmmdata")
    assert str(f.summary()) == R_SUMMARY_OLSEXAMP
    assert f.summary()._repr_html_().startswith("<pre")
    assert rel(f.confint().to_numpy(), R_CONFINT_OLSEXAMP) < 1e-6  # R printed 8 digits
    assert list(f.confint().columns) == ["2.5 %", "97.5 %"]


def test_display_lm_and_glm(data):
    f = fit("extro ~ open + agree + social", data["lmmdata"], fitter="lm", data_name="lmmdata")
    d = f.display()
    assert isinstance(d, Display)
    lines = str(d).splitlines()
    assert lines[0] == "lm(formula = extro ~ open + agree + social, data = lmmdata)"
    assert lines[1].split() == ["coef.est", "coef.se"]
    assert lines[2].split() == ["(Intercept)", "60.39", "3.08"]
    assert lines[-3:] == ["---", "n = 1200, k = 4", "residual sd = 10.13, R-Squared = 0.00"]
    assert d._repr_html_().startswith("<pre")

    g = fit("extro ~ open + agree + social", data["lmmdata"], fitter="glm")
    tail = str(g.display()).splitlines()[-5:]
    assert tail == ["---", "  n = 1200, k = 4",
                    "  residual deviance = 122848.3, null deviance = 123106.9 (difference = 258.7)",
                    "  overdispersion parameter = 102.7",
                    "  residual sd is sqrt(overdispersion) = 10.13"]

    b = fit(*R_CASES["binomial"][:1], data["cbpp"], family="binomial")
    tail = str(b.display()).splitlines()
    assert tail[0] == "glm(formula = cbind(incidence, size - incidence) ~ period, family = binomial)"
    assert tail[-2:] == ["  n = 56, k = 4",
                         "  residual deviance = 114.1, null deviance = 154.8 (difference = 40.7)"]


# ---------------------------------------------------------------- other families vs R


def _case(key, data):
    formula, dname, family, link, weights, fitter = R_CASES[key]
    return fit(formula, data[dname], family, link, weights, fitter, data_name=dname)


@pytest.mark.parametrize("key", list(R_CASES))
def test_against_r(key, data):
    ref = R_GLM[key]
    f = _case(key, data)
    assert list(f.coef().index) == list(ref["coef"])
    assert rel(f.coef().to_numpy(), list(ref["coef"].values())) < 1e-8
    table = f.coef_table()
    assert rel(table["Std. Error"], ref["se"]) < 1e-6
    assert rel(table.iloc[:, 2], ref["stat"]) < 1e-6
    assert rel(table.iloc[:, 3], ref["p"]) < 1e-5
    assert table.columns[2] == ("z value" if key.startswith(("binom", "bern", "poisson"))
                                else "t value")
    for attr, method in [("logLik", f.loglik), ("AIC", f.aic), ("BIC", f.bic),
                         ("deviance", f.deviance)]:
        assert rel(method(), ref[attr]) < 1e-6, attr
    assert f.df_residual() == ref["df_residual"] and f.nobs() == ref["nobs"]
    assert rel(f.fitted()[:5], ref["fitted_first5"]) < 1e-6
    assert rel(f.residuals()[:5], ref["resid_first5"]) < 1e-6
    assert rel(f.residuals("pearson")[:5], ref["pearson_first5"]) < 1e-6
    assert rel(f.confint().to_numpy(), ref["confint"]) < 1e-6
    if "null_deviance" in ref:
        assert rel(f.null_deviance(), ref["null_deviance"]) < 1e-6
        assert rel(f.dispersion(), ref["dispersion"]) < 1e-6
        assert f.iterations == ref["iter"]
    if "sigma" in ref:
        assert rel(f.sigma(), ref["sigma"]) < 1e-6
        assert rel(f.r_squared(), ref["r_squared"]) < 1e-6
        assert rel(f.adj_r_squared(), ref["adj_r_squared"]) < 1e-6
        assert rel(f.fstatistic()["value"], ref["F"]) < 1e-6


def _after_call(text):
    lines = text.split("\n")
    i = lines.index("Call:") + 1
    while lines[i] != "":
        i += 1
    return "\n".join(lines[i:])


def test_glm_and_weighted_lm_summaries_print_like_r(data):
    assert _after_call(str(_case("binomial", data).summary())) == R_SUMMARY_BINOMIAL_AFTER_CALL
    assert _after_call(str(_case("lm_weighted", data).summary())) == R_SUMMARY_LM_WEIGHTED_AFTER_CALL


# ---------------------------------------------------------------- independent ML


def _newton(X, loglik_grad_hess, beta0, tol=1e-13):
    beta = beta0.copy()
    for _ in range(100):
        g, H = loglik_grad_hess(beta)
        step = np.linalg.solve(H, g)
        beta = beta - step
        if np.max(np.abs(step)) < tol:
            break
    g, H = loglik_grad_hess(beta)
    return beta, np.sqrt(np.diag(np.linalg.inv(-H)))


def test_binomial_matches_newton_raphson(data):
    cbpp = data["cbpp"]
    X = np.column_stack([np.ones(len(cbpp))] + [(cbpp["period"] == p).to_numpy(float)
                                               for p in ["2", "3", "4"]])
    k, n = cbpp["incidence"].to_numpy(float), cbpp["size"].to_numpy(float)

    def gh(beta):
        p = 1 / (1 + np.exp(-X @ beta))
        return X.T @ (k - n * p), -(X * (n * p * (1 - p))[:, None]).T @ X

    beta, se = _newton(X, gh, np.zeros(4))
    f = _case("binomial", data)
    assert rel(f.fixef().to_numpy(), beta) < 1e-8
    assert rel(f.se().to_numpy(), se) < 1e-6
    p = 1 / (1 + np.exp(-X @ beta))
    ll = stats.binom.logpmf(k, n, p).sum()
    assert f.loglik() == pytest.approx(ll, rel=1e-10)
    assert f.aic() == pytest.approx(-2 * ll + 8, rel=1e-10)
    sat = stats.binom.logpmf(k, n, k / n).sum()
    assert f.deviance() == pytest.approx(2 * (sat - ll), rel=1e-9)
    pbar = k.sum() / n.sum()
    assert f.null_deviance() == pytest.approx(2 * (sat - stats.binom.logpmf(k, n, pbar).sum()),
                                              rel=1e-9)
    assert np.allclose(f.predict(type="response"), p) and np.allclose(f.predict(), X @ beta)


def test_poisson_with_offset_matches_newton_raphson(data):
    cbpp = data["cbpp"]
    X = np.column_stack([np.ones(len(cbpp))] + [(cbpp["period"] == p).to_numpy(float)
                                               for p in ["2", "3", "4"]])
    y, off = cbpp["incidence"].to_numpy(float), np.log(cbpp["size"].to_numpy(float))

    def gh(beta):
        mu = np.exp(X @ beta + off)
        return X.T @ (y - mu), -(X * mu[:, None]).T @ X

    beta, se = _newton(X, gh, np.zeros(4))
    f = _case("poisson_offset", data)
    assert rel(f.fixef().to_numpy(), beta) < 1e-8
    assert rel(f.se().to_numpy(), se) < 1e-6
    mu = np.exp(X @ beta + off)
    assert f.loglik() == pytest.approx(stats.poisson.logpmf(y, mu).sum(), rel=1e-10)
    # null model with an offset: intercept-only refit, as R's glm()
    b0 = np.log(y.sum() / np.exp(off).sum())
    mu0 = np.exp(b0 + off)
    sat = stats.poisson.logpmf(y, y).sum()
    assert f.null_deviance() == pytest.approx(2 * (sat - stats.poisson.logpmf(y, mu0).sum()),
                                              rel=1e-9)


# ---------------------------------------------------------------- accessors


def test_predict_newdata_and_se(data):
    cbpp = data["cbpp"]
    f = _case("binomial", data)
    new = cbpp.iloc[[0, 1, 2, 3]]
    assert np.allclose(f.predict(new), f.predict()[:4])
    assert np.allclose(f.predict(new, type="response"), f.fitted()[:4])
    pred, se = f.predict(new, se_fit=True)
    X = f.design.X[:4]
    assert np.allclose(se, np.sqrt(np.einsum("ij,jk,ik->i", X, f.vcov().to_numpy(), X)))
    po = _case("poisson_offset", data)
    assert np.allclose(po.predict(cbpp.iloc[:5], type="response"), po.fitted()[:5])
    with pytest.raises(BayesmixError, match="type"):
        f.predict(type="probability")


def test_simulate(data):
    b = _case("binomial", data)
    s1, s2 = b.simulate(3, seed=1), b.simulate(3, seed=1)
    assert s1.shape == (3, 56) and np.array_equal(s1, s2)
    assert np.all(s1 <= data["cbpp"]["size"].to_numpy()) and np.all(s1 == np.round(s1))
    g = fit("extro ~ open + agree + social + school", data["lmmdata"])
    sims = g.simulate(200, seed=2)
    assert sims.shape == (200, 1200)
    assert np.std(sims - g.fitted(), axis=None) == pytest.approx(g.sigma(), rel=0.01)
    assert np.all(_case("poisson_offset", data).simulate(2, seed=3) >= 0)


def test_zero_weight_rows_are_left_out(data):
    cbpp = data["cbpp"].copy()
    cbpp["w0"] = 1.0
    cbpp.loc[cbpp.index[:3], "w0"] = 0.0
    full = fit("incidence ~ period + size", cbpp, weights="w0", fitter="lm")
    sub = fit("incidence ~ period + size", cbpp.iloc[3:], fitter="lm")
    assert np.allclose(full.fixef(), sub.fixef(), rtol=1e-10)
    assert full.nobs() == sub.nobs() == 53 and full.df_residual() == sub.df_residual()
    for m in ("loglik", "aic", "bic", "sigma", "r_squared", "adj_r_squared"):
        assert getattr(full, m)() == pytest.approx(getattr(sub, m)(), rel=1e-10), m


def test_vcov_and_methods_shapes(data):
    f = _case("gamma_log", data)
    V = f.vcov()
    assert V.shape == (8, 8) and np.allclose(V, V.T)
    assert np.allclose(np.sqrt(np.diag(V)), f.coef_table()["Std. Error"])
    assert f.df() == 9  # coefficients + dispersion
    with pytest.raises(BayesmixError, match="R-squared"):
        f.r_squared()
    assert "GlmFit glm Gamma(log)" in repr(f)


def test_errors(data):
    with pytest.raises(BayesmixError, match="lm is gaussian"):
        fit(*R_CASES["binomial"][:1], data["cbpp"], family="binomial", fitter="lm")
    with pytest.raises(FamilyError, match="negbinomial"):
        fit("incidence ~ period", data["cbpp"], family="negbinomial")
